from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse

from accounts.admin import UserAdmin
from accounts.models import User

from . import selectors, services, webhooks
from .models import Invoice, Plan, Subscription
from .stripe_api import StripeUnavailable

CHANGE_PLAN_PERMISSION = "billing.change_subscription"


# People's admin with their plan: billing builds on accounts, so it adds the column and the action.
admin.site.unregister(User)


@admin.register(User)
class PeopleAdmin(UserAdmin):
    list_display = [*UserAdmin.list_display, "plan_shown"]
    actions = [*UserAdmin.actions, "change_plan"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription__plan")

    @admin.display(description="plan")
    def plan_shown(self, obj: User) -> str:
        try:
            plan = obj.subscription.plan
        except Subscription.DoesNotExist:
            plan = None
        return str(plan) if plan else "default plan"

    def has_plan_permission(self, request) -> bool:
        return request.user.has_perm(CHANGE_PLAN_PERMISSION)

    @admin.action(description="Change plan", permissions=["plan"])
    def change_plan(self, request, queryset):
        if request.POST.get("confirmed") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Put these people on another plan?",
                "explanation": "The plan is assigned by an admin and kept until the person buys one.",
                "queryset": queryset,
                "action": "change_plan",
                "confirm_label": "Change plan",
                "plans": Plan.objects.all(),
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/billing/plan_change.html", context)
        chosen = request.POST.get("plan", "")
        plan = (
            None
            if chosen == "default"
            else Plan.objects.filter(pk=chosen if chosen.isdigit() else None).first()
        )
        if plan is None and chosen != "default":
            self.message_user(request, "Choose one of the plans.", messages.ERROR)
            return None
        with transaction.atomic():  # plan_assign locks each person's subscription row
            for user in queryset:
                services.plan_assign(user=user, plan=plan)
        self.message_user(
            request, f"{queryset.count()} now on {plan or 'the default plan'}.", messages.SUCCESS
        )
        return None


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "price_label",
        "stripe_price_id",
        "is_default",
        "cloud_messages_per_day",
        "image_generations_per_month",
        "max_upload_mb",
        "local_limited",
    ]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Each person's plan, its state at Stripe and their usage; changing the plan here assigns
    it by hand (kept until the person buys one)."""

    list_display = ["user", "plan_in_force", "assigned_by_admin", "status", "current_period_end", "usage"]
    list_filter = ["plan", "status", "assigned_by_admin"]
    search_fields = ["user__email", "user__display_name", "stripe_customer_id", "stripe_subscription_id"]
    autocomplete_fields = ["user"]
    readonly_fields = [
        "assigned_by_admin",
        "status",
        "stripe_customer_id",
        "stripe_subscription_id",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "state_at",
        "usage",
    ]
    actions = ["read_from_stripe"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "user"] if obj else self.readonly_fields

    @admin.display(description="plan")
    def plan_in_force(self, obj: Subscription) -> str:
        return str(obj.plan or selectors.plan_default() or "–")

    @admin.display(description="usage")
    def usage(self, obj: Subscription) -> str:
        if obj.pk is None:
            return "–"
        meters = selectors.usage_meters(user=obj.user)
        return " · ".join(f"{m.label}: {m.used}/{'∞' if m.limit is None else m.limit}" for m in meters)

    def save_model(self, request, obj, form, change):
        # Through the service: a plan chosen here is marked as assigned by an admin.
        assigned = services.plan_assign(user=obj.user, plan=obj.plan)
        obj.pk, obj.assigned_by_admin = assigned.pk, assigned.assigned_by_admin

    @admin.action(description="Read again from Stripe")
    def read_from_stripe(self, request, queryset):
        for subscription in queryset.exclude(stripe_subscription_id=""):
            try:
                webhooks.subscription_sync(subscription=subscription)
            except StripeUnavailable:
                self.message_user(request, f"{subscription.user}: Stripe did not answer.", messages.WARNING)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["created_at", "number", "user", "subject_reference", "amount_display", "status"]
    list_filter = ["status", "currency"]
    search_fields = ["number", "stripe_invoice_id", "user__email", "subject_reference"]

    def has_add_permission(self, request):
        return False  # invoices come from Stripe only

    def has_change_permission(self, request, obj=None):
        return False

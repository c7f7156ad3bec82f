from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from localai_site.core.refusals import Refusal, refusal_message

from . import selectors, services, webhooks
from .models import ENTITLED_STATUSES, Plan


@login_required
def plan(request):
    user = request.user
    subscription = selectors.subscription_of(user=user)
    context = {
        "subscription": subscription,
        "plan": selectors.plan_of(user=user, subscription=subscription),
        "plans": Plan.objects.all(),
        "for_sale": set(selectors.plans_for_sale().values_list("pk", flat=True)),
        "meters": selectors.usage_meters(user=user),
        "invoices": selectors.invoices_of(user=user),
        "billing_enabled": settings.BILLING_ENABLED,
        # Checkout for a first plan; with one running, plans change in the Customer Portal.
        "can_buy": settings.BILLING_ENABLED
        and not (
            subscription and subscription.stripe_subscription_id and subscription.status in ENTITLED_STATUSES
        ),
        "just_bought": request.GET.get("checkout") == "done",
    }
    return render(request, "billing/plan.html", context)


@login_required
@require_POST
def checkout(request, slug):
    plan_page = request.build_absolute_uri(reverse("billing:plan"))
    try:
        url = services.checkout_start(
            user=request.user,
            plan=get_object_or_404(Plan, slug=slug),
            success_url=f"{plan_page}?checkout=done",
            cancel_url=plan_page,
        )
    except Refusal as refusal:
        refusal_message(request, refusal)
        return redirect("billing:plan")
    return redirect(url)  # Stripe's Checkout page


@login_required
@require_POST
def portal(request):
    try:
        url = services.portal_open(
            user=request.user, return_url=request.build_absolute_uri(reverse("billing:plan"))
        )
    except Refusal as refusal:
        refusal_message(request, refusal)
        return redirect("billing:plan")
    return redirect(url)  # Stripe's Customer Portal


@csrf_exempt  # Stripe signs it instead (Stripe-Signature, checked on the raw body)
@require_POST
def stripe_webhook(request):
    if not settings.BILLING_ENABLED:
        raise Http404("Billing is off on this instance.")
    try:
        webhooks.stripe_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except Refusal as refusal:
        return HttpResponseBadRequest(refusal.message, content_type="text/plain")
    return HttpResponse(status=200)

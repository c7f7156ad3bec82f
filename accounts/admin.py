from allauth.mfa.models import Authenticator
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from localai_site.core.admin_actions import confirmed_action
from localai_site.core.privacy import user_erase

from . import services
from .api_keys import api_key_revoke
from .forms import AdminUserChangeForm
from .models import (
    ApiKey,
    Consent,
    CrashReport,
    DataSubjectRequest,
    ExportArchive,
    InstanceSettings,
    Invitation,
    PolicyVersion,
    RequestStatus,
    User,
)

HANDLE_PERMISSION = "accounts.handle_data_requests"
DUE_SOON = timezone.timedelta(days=7)


class DataRightsActions:
    """Export, erase, restrict and lift restriction: for admins allowed to handle requests."""

    def has_handle_permission(self, request) -> bool:
        return request.user.has_perm(HANDLE_PERMISSION)

    @confirmed_action(
        description="Export their data",
        title="Export these people's data?",
        explanation="A ZIP of everything kept about each is built in the background "
        "(Admin → Export archives).",
        confirm_label="Yes, export",
        done=lambda user, archive: f"Export of {user} started.",
        permissions=("handle",),
    )
    def export_data(self, request, user):
        return services.export_request(user=user, requested_by=request.user)

    @confirmed_action(
        description="Erase their data",
        title="Erase these people for good?",
        explanation="Accounts, conversations, files and sessions are erased; records the law requires "
        "are kept without names. This cannot be undone.",
        confirm_label="Yes, erase",
        done=lambda user, receipt: f"Erased: {sum(receipt.values())} records.",
        dangerous=True,
        permissions=("handle",),
    )
    def erase_data(self, request, user):
        return user_erase(user=user)

    @confirmed_action(
        description="Restrict processing",
        title="Restrict processing?",
        explanation="They can still read and export their data; nothing new is processed.",
        confirm_label="Yes, restrict",
        done=lambda user, _: f"Processing of {user}'s data is restricted.",
        permissions=("handle",),
    )
    def restrict_processing(self, request, user):
        return services.user_restrict(user=user, restricted=True)

    @confirmed_action(
        description="Lift restriction",
        title="Lift the restriction?",
        explanation="Their data can be processed again.",
        confirm_label="Yes, lift it",
        done=lambda user, _: f"The restriction on {user}'s data is lifted.",
        permissions=("handle",),
    )
    def lift_restriction(self, request, user):
        return services.user_restrict(user=user, restricted=False)


class AccessActions:
    """Deactivate and reactivate: for admins who may change people."""

    @confirmed_action(
        description="Deactivate (no more sign-in)",
        title="Deactivate these people?",
        explanation="They are signed out everywhere and cannot sign in or use their API keys; "
        "their data stays until it is erased. Reactivating undoes it.",
        confirm_label="Yes, deactivate",
        done=lambda user, _: f"{user} is deactivated.",
        dangerous=True,
        permissions=("change",),
    )
    def deactivate(self, request, user):
        return services.user_active_set(user=user, active=False, actor=request.user)

    @confirmed_action(
        description="Reactivate",
        title="Reactivate these people?",
        explanation="They can sign in again.",
        confirm_label="Yes, reactivate",
        done=lambda user, _: f"{user} can sign in again.",
        permissions=("change",),
    )
    def reactivate(self, request, user):
        return services.user_active_set(user=user, active=True, actor=request.user)


class ConsentInline(admin.TabularInline):
    """Consent records are evidence: shown, never edited."""

    model = Consent
    fields = ["purpose", "given", "version", "source", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(DataRightsActions, AccessActions, BaseUserAdmin):
    inlines = [ConsentInline]
    ordering = ["email"]
    list_display = ["email", "display_name", "is_staff", "is_active", "processing_restricted", "date_joined"]
    list_filter = ["is_staff", "is_active", "processing_restricted"]
    search_fields = ["email", "display_name"]
    actions = [
        "deactivate",
        "reactivate",
        "export_data",
        "erase_data",
        "restrict_processing",
        "lift_restriction",
    ]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name", "avatar", "local_only", "processing_restricted")}),
        ("Privacy choices", {"fields": ("analytics_enabled", "policy_version_reviewed")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    readonly_fields = ["analytics_enabled", "policy_version_reviewed"]
    form = AdminUserChangeForm

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)  # in the admin's transaction
        if change:
            form.avatar_forget_replaced()

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Deleting rows would skip erasure (files, sessions, logs, pseudonymised records).
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "regime", "received_at", "deadline_shown", "status", "handled_by"]
    list_select_related = ["subject", "handled_by"]  # the list shows both
    list_filter = ["status", "kind", "regime"]
    search_fields = ["subject_email", "subject_reference"]
    raw_id_fields = ["subject"]
    readonly_fields = ["due_at", "subject_reference", "handled_by", "outcome", "completed_at"]
    fields = [
        "kind", "regime", "subject", "subject_email", "subject_reference", "received_at", "due_at",
        "extended_until", "extension_reason", "verification", "status", "handled_by", "outcome",
        "completed_at",
    ]  # fmt: skip
    actions = ["carry_out"]

    class Media:
        css = {"all": ["accounts/admin.css"]}  # the deadline's colours

    def has_module_permission(self, request):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_add_permission(self, request):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_delete_permission(self, request, obj=None):
        return False  # the record of how a request was answered is kept

    def has_handle_permission(self, request):
        return request.user.has_perm(HANDLE_PERMISSION)

    @admin.display(description="Due", ordering="due_at")
    def deadline_shown(self, obj: DataSubjectRequest):
        text = obj.deadline.strftime("%Y-%m-%d")
        if obj.status in (RequestStatus.COMPLETED, RequestStatus.REFUSED):
            return text
        left = obj.deadline - timezone.now()
        if left.total_seconds() < 0:
            return format_html('<strong class="due-late">{} · overdue</strong>', text)
        if left < DUE_SOON:
            return format_html('<strong class="due-soon">{} · {} days left</strong>', text, left.days)
        return text

    def save_model(self, request, obj, form, change):
        services.data_request_save(request=obj)

    @confirmed_action(
        description="Carry out (export, erase or restrict)",
        title="Carry out these requests?",
        explanation="Access and portability requests start an export; erasure requests erase the "
        "account for good; restriction requests restrict processing.",
        confirm_label="Yes, carry them out",
        done=lambda data_request, _: f"{data_request}: done.",
        dangerous=True,
        permissions=("handle",),
    )
    def carry_out(self, request, data_request):
        return services.data_request_carry_out(request=data_request, actor=request.user)


@admin.register(ExportArchive)
class ExportArchiveAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "status", "progress", "created_at", "expires_at", "download"]
    readonly_fields = [
        "user",
        "requested_by",
        "status",
        "progress",
        "size_bytes",
        "created_at",
        "expires_at",
        "error",
    ]
    fields = readonly_fields

    def has_module_permission(self, request):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Download")
    def download(self, obj: ExportArchive):
        if not obj.is_downloadable:
            return "–"
        return format_html('<a href="{}">ZIP</a>', reverse("accounts:export_admin_download", args=[obj.pk]))


@admin.register(InstanceSettings)
class InstanceSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "__str__", "signup_mode", "cloud_enabled", "api_enabled", "mfa_required", "minimum_age", "updated_at",
    ]  # fmt: skip

    def has_add_permission(self, request):
        return not InstanceSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.unregister(Authenticator)


@admin.register(Authenticator)
class AuthenticatorAdmin(admin.ModelAdmin):
    """Who has which second factor. Never their secrets (allauth's own admin edits ``data``);
    deleting a person's factors is how someone who lost them all, codes included, gets back in."""

    list_display = ["user", "type", "created_at", "last_used_at"]
    list_filter = ["type"]
    search_fields = ["user__email"]
    fields = ["user", "type", "created_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "signup_link", "created_at", "accepted_at"]
    readonly_fields = ["signup_link", "created_by", "accepted_by", "accepted_at"]
    fields = ["email", "signup_link", "created_by", "accepted_by", "accepted_at"]

    @admin.display(description="Signup link")
    def signup_link(self, obj: Invitation) -> str:
        if not obj.pk:
            return "Shown once saved."
        return f"{reverse('account_signup')}?invite={obj.token}"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    """Publishing is adding a version; a published version is never edited or deleted."""

    list_display = ["__str__", "published_at", "significant", "summary", "published_by"]
    fields = ["body", "summary", "significant"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.fields, "version", "published_at", "published_by"] if obj else []

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        published = services.policy_publish(
            body=obj.body, summary=obj.summary, significant=obj.significant, published_by=request.user
        )
        obj.pk, obj.version = published.pk, published.version
        services.policy_reviewed(user=request.user)  # its author has read it


@admin.register(CrashReport)
class CrashReportAdmin(admin.ModelAdmin):
    """Errors kept on this instance (scrubbed), deleted after the retention period."""

    list_display = [
        "last_seen_at", "exception_type", "short_message", "source", "occurrences", "created_at",
        "request_path",
    ]  # fmt: skip
    list_filter = ["source", "exception_type", "release"]
    search_fields = ["message", "exception_type", "request_path", "fingerprint"]
    date_hierarchy = "last_seen_at"
    fields = [
        "last_seen_at", "created_at", "count", "exception_type", "message", "traceback_shown", "source",
        "logger", "request_method", "request_path", "release", "fingerprint",
    ]  # fmt: skip
    readonly_fields = fields

    class Media:
        css = {"all": ["accounts/admin.css"]}  # the traceback's wrapping

    @admin.display(description="Traceback")
    def traceback_shown(self, obj: CrashReport) -> str:
        return format_html('<pre class="traceback">{}</pre>', obj.traceback)

    @admin.display(description="Message")
    def short_message(self, obj: CrashReport) -> str:
        return obj.message[:100]

    @admin.display(description="Seen", ordering="count")
    def occurrences(self, obj: CrashReport) -> str:
        return f"{obj.count}×"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Every person's API keys, by name and prefix: the keys themselves are never stored."""

    list_display = ["name", "prefix", "user", "scope", "local_only", "created_at", "expires_at",
                    "last_used_at", "last_used_ip", "revoked_at"]  # fmt: skip
    list_filter = ["scope", "local_only", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__email"]
    fields = ["user", "name", "prefix", "scope", "local_only", "keep_history", "created_at", "expires_at",
              "last_used_at", "last_used_ip", "revoked_at"]  # fmt: skip
    readonly_fields = fields
    actions = ["revoke"]

    @confirmed_action(
        description="Revoke the selected keys",
        title="Revoke these API keys?",
        explanation="Tools using them are refused from now on; their owners can make new ones.",
        confirm_label="Yes, revoke",
        done=lambda key, _: f"{key} is revoked.",
        dangerous=True,
    )
    def revoke(self, request, key: ApiKey) -> ApiKey:
        return api_key_revoke(key=key)

    def has_add_permission(self, request):
        return False  # a key is shown once, to the person who makes it

    def has_change_permission(self, request, obj=None):
        return False

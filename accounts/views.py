from datetime import datetime, time

from allauth.account import views as allauth_account_views
from allauth.socialaccount import views as allauth_social_views
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from localai_site.core.privacy import panels_for, user_erase
from localai_site.core.refusals import Refusal, refusal_message

from . import selectors, services
from .analytics import usage_summary
from .api_keys import api_key_create, api_keys_of
from .api_keys import api_key_revoke as key_revoke
from .charts import dashboard_charts
from .forms import AccountDeleteForm, ApiKeyForm, ProfileForm
from .models import ApiKey, ConsentPurpose, ConsentSource, ExportArchive, PolicyVersion
from .policy import policy_html


@login_required
def profile(request):
    form = ProfileForm(request.POST or None, request.FILES or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your profile was saved.")
        return redirect("accounts:profile")
    return render(request, "accounts/profile.html", {"form": form})


@login_required
@never_cache
def avatar(request):
    """Profile pictures are served to their owner only, never from a public folder."""
    if not request.user.avatar:
        raise Http404("No profile picture.")
    return FileResponse(request.user.avatar.open("rb"))


@login_required
def privacy(request):
    user = request.user
    context = {
        "export": selectors.export_latest(user=user),
        "consents": selectors.consents_of(user=user),
        "policy": selectors.policy_current(),
        "gpc": request.gpc,
        "panels": panels_for(user),  # what the other apps keep: chats, files, who received them
    }
    return render(request, "accounts/privacy.html", context)


@login_required
@require_POST
def analytics_consent(request):
    """Giving and withdrawing are the same single click."""
    given = request.POST.get("given") == "1"
    if given and request.gpc:
        messages.error(
            request,
            "Your browser asks sites not to track you (Global Privacy Control), so analytics stay off.",
        )
        return redirect("accounts:privacy")
    services.consent_set(
        user=request.user, purpose=ConsentPurpose.ANALYTICS, given=given, source=ConsentSource.SETTINGS
    )
    messages.success(request, "Thank you: usage analytics are on." if given else "Usage analytics are off.")
    return redirect("accounts:privacy")


def policy(request, version=None):
    current = selectors.policy_current()
    shown = current if version is None else get_object_or_404(PolicyVersion, version=version)
    context = {
        "shown": shown,
        "current": current,
        "body": policy_html(shown),
        "versions": PolicyVersion.objects.only("version", "published_at", "summary", "significant"),
    }
    return render(request, "accounts/policy.html", context)


@login_required
def policy_review(request):
    next_url = request.GET.get("next") or request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    current = selectors.policy_current()
    if request.method == "POST" or current is None:  # nothing published: nothing to review
        services.policy_reviewed(user=request.user)
        return redirect(next_url or "chat:home")
    context = {"current": current, "body": policy_html(current), "next": next_url}
    return render(request, "accounts/policy_review.html", context)


@login_required
@require_POST
def export_start(request):
    try:
        services.export_request(user=request.user)
    except Refusal as refusal:
        refusal_message(request, refusal)
    else:
        messages.success(request, "Your download is being prepared; this page shows when it is ready.")
    return redirect("accounts:privacy")


@login_required
@never_cache
def export_status(request, export_id):
    archive = selectors.export_get_owned(user=request.user, export_id=export_id)
    if archive is None:
        raise Http404("No such export of yours.")
    url = reverse("accounts:export_download", args=[archive.token]) if archive.is_downloadable else None
    return JsonResponse({"status": archive.status, "progress": archive.progress, "download_url": url})


@login_required
@never_cache
def export_download(request, token):
    archive = selectors.export_downloadable(user=request.user, token=token)
    if archive is None:
        raise Http404("This download link is not yours, or it has expired.")
    return FileResponse(archive.file.open("rb"), as_attachment=True, filename="localai-my-data.zip")


@login_required
def account_delete(request):
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        try:
            user_erase(user=user)
        except Refusal as refusal:  # a step outside this database (Stripe) could not be done
            refusal_message(request, refusal)
            return redirect("account_login")
        messages.success(request, "Your account and everything kept about you were erased.")
        return redirect("account_login")
    return render(request, "accounts/account_delete.html", {"form": form})


@login_required
@never_cache  # the new key is on the page once: no copy of it in any cache
def api_keys(request):
    """The person's API keys; a new one is shown on the page that made it, and never again."""
    form = ApiKeyForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        expires_on = form.cleaned_data["expires_on"]
        expires_at = None
        if expires_on is not None:  # the end of that day, where the person is
            day_end = datetime.combine(expires_on, time.max)
            expires_at = timezone.make_aware(day_end, timezone.get_current_timezone())
        try:
            created = api_key_create(
                user=request.user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                local_only=form.cleaned_data["local_only"],
                keep_history=form.cleaned_data["keep_history"],
                expires_at=expires_at,
            )
        except Refusal as refusal:
            form.add_error(None, refusal.message)
        else:
            form = ApiKeyForm()
    context = {
        "form": form,
        "created": created,
        "keys": api_keys_of(user=request.user),
        "api_enabled": selectors.instance_settings_get().api_enabled,
        "api_base": request.build_absolute_uri(reverse("chat:api_models")).removesuffix("/models"),
    }
    return render(request, "accounts/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke(request, key_id):
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    key_revoke(key=key)
    messages.success(request, f"The key “{key.name}” is revoked; tools using it are refused from now on.")
    return redirect("accounts:api_keys")


@permission_required("accounts.handle_data_requests", raise_exception=True)
@never_cache
def export_admin_download(request, export_id):
    """Admins answering an access request hand the archive on themselves."""
    archive = ExportArchive.objects.filter(pk=export_id).first()
    if archive is None or not archive.is_downloadable:
        raise Http404("No such export, or it has expired.")
    return FileResponse(
        archive.file.open("rb"), as_attachment=True, filename=f"localai-export-{archive.pk}.zip"
    )


def admin_login(request):
    """In place of the admin's own sign-in form, which checks passwords without any rate
    limit: staff sign in at the site's sign-in page, one door with allauth's limits."""
    if request.user.is_authenticated and not admin.site.has_permission(request):
        # Signed in without admin rights: the sign-in page would only send them back here.
        raise PermissionDenied("This account does not administer this instance.")
    return redirect_to_login(
        request.GET.get("next") or reverse("admin:index"), login_url=reverse("account_login")
    )


@permission_required("accounts.view_usagedaily", raise_exception=True)
def analytics_dashboard(request):
    """Charts of the first-party analytics, for admins (mounted inside the admin)."""
    summary = usage_summary(days=30)
    context = {
        **admin.site.each_context(request),
        "title": "Usage analytics",
        "summary": summary,
        "charts": dashboard_charts(summary),
        "crash_count": selectors.crash_reports_recent(days=7),
    }
    return render(request, "admin/analytics.html", context)


class _RefusalShownOnTheForm:
    """A signup refused at the last moment (its invitation or the setup token used by
    someone else a moment before) shows the form again with the reason."""

    def form_valid(self, form):
        try:
            return super().form_valid(form)
        except Refusal as refusal:
            form.add_error(None, refusal.message)
            return self.form_invalid(form)


class SignupView(_RefusalShownOnTheForm, allauth_account_views.SignupView):
    pass


class SocialSignupView(_RefusalShownOnTheForm, allauth_social_views.SignupView):
    pass

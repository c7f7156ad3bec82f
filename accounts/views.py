from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from chat.selectors import uploads_for
from chat.services import conversations_clear

from . import selectors, services
from .forms import AccountDeleteForm, ProfileForm
from .models import ExportArchive


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
        "recipients": selectors.recipients_of(user=user),
        "conversation_counts": selectors.conversation_counts(user=user),
        "uploads": uploads_for(user=user),
    }
    return render(request, "accounts/privacy.html", context)


@login_required
@require_POST
def export_start(request):
    services.export_request(user=request.user)
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
@require_POST
def history_clear(request):
    scope = request.POST.get("scope")
    if scope not in ("local", "cloud"):
        raise Http404("Say which history to clear.")
    count = conversations_clear(user=request.user, local=scope == "local")
    kind = "local-model" if scope == "local" else "cloud"
    messages.success(request, f"Deleted {count} {kind} conversation{'s' if count != 1 else ''}.")
    return redirect("accounts:privacy")


@login_required
def account_delete(request):
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        services.user_erase(user=user)
        messages.success(request, "Your account and everything kept about you were erased.")
        return redirect("account_login")
    return render(request, "accounts/account_delete.html", {"form": form})


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

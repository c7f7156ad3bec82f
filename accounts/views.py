from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from .forms import ProfileForm


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

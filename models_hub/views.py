from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from localai_site.core.refusals import Refusal, refusal_message
from localai_site.core.sockets import CLOSE_CODES

from . import runtime, selectors, services
from .forms import AddModelForm, ModelSettingsForm, TokenForm
from .models import LocalModel, SpeechModel
from .permissions import can_manage_models


def admin_only(view):
    """Installing, configuring and deleting is for admins: others get 403."""

    @login_required
    def wrapped(request, *args, **kwargs):
        if not can_manage_models(request.user):
            raise PermissionDenied("Only admins manage the models of this instance.")
        return view(request, *args, **kwargs)

    return wrapped


def _model(slug: str) -> LocalModel:
    return get_object_or_404(LocalModel, slug=slug)


def _done(request, action, success: str):
    """Run a service call; its refusal becomes the page's error message."""
    try:
        result = action()
    except Refusal as refusal:
        refusal_message(request, refusal)
    else:
        messages.success(request, success.format(model=result))
    return redirect("hub:index")


@login_required
def hub(request):
    if not can_manage_models(request.user):
        return render(request, "models_hub/installed.html", {"models": selectors.local_models_ready()})
    services.downloads_fail_stale()
    page = selectors.hub_page()
    context = {
        "page": page,
        "close_codes": json.dumps(CLOSE_CODES),
        "socket_path": reverse("socket", urlconf="models_hub.routing"),
        "add_form": AddModelForm(),
        "token_form": TokenForm(),
        "installed": [
            (row, ModelSettingsForm(instance=row.model, prefix=row.model.slug)) for row in page.installed
        ],
        "speech_rows": selectors.speech_rows(),
        "speech_in_use": selectors.speech_model_in_use(),
    }
    return render(request, "models_hub/hub.html", context)


@require_POST
@admin_only
def install(request, slug):
    return _done(
        request,
        lambda: services.model_install(slug=slug, requested_by=request.user),
        "{model} is being downloaded.",
    )


@require_POST
@admin_only
def add(request):
    form = AddModelForm(request.POST)
    if not form.is_valid():
        for error in form.non_field_errors() or [e for errors in form.errors.values() for e in errors]:
            messages.error(request, error)
        return redirect("hub:index")
    data = form.cleaned_data
    if data["source"] == "path":
        return _done(
            request,
            lambda: services.model_add_from_path(
                path=data["path"], name=data["name"], requested_by=request.user
            ),
            "{model} was added and is ready to use.",
        )
    return _done(
        request,
        lambda: services.model_add_from_hub(
            repo=data["repo"],
            file=data["file"],
            revision=data["revision"],
            name=data["name"],
            requested_by=request.user,
        ),
        "{model} is being downloaded.",
    )


@require_POST
@admin_only
def cancel(request, slug):
    model = _model(slug)
    return _done(
        request,
        lambda: services.model_download_cancel(model=model),
        "The download of {model} was cancelled; resume it any time.",
    )


@require_POST
@admin_only
def resume(request, slug):
    model = _model(slug)
    return _done(
        request,
        lambda: services.model_download_start(model=model, requested_by=request.user),
        "The download of {model} goes on.",
    )


@require_POST
@admin_only
def delete(request, slug):
    model = _model(slug)
    return _done(request, lambda: services.model_delete(model=model) or model, "{model} was deleted.")


@require_POST
@admin_only
def model_settings(request, slug):
    model = _model(slug)
    form = ModelSettingsForm(request.POST, instance=LocalModel.objects.get(pk=model.pk), prefix=model.slug)
    if not form.is_valid():
        messages.error(
            request, "Check the settings: " + "; ".join(e for es in form.errors.values() for e in es)
        )
        return redirect("hub:index")
    data = form.cleaned_data
    return _done(
        request,
        lambda: services.model_settings_update(
            model=model,
            n_ctx=data["n_ctx"],
            n_gpu_layers=data["n_gpu_layers"],
            n_threads=data["n_threads"],
            parallel_replies=data["parallel_replies"],
            chat_template_override=data["chat_template_override"],
        ),
        "The settings of {model} were saved; workers use them from its next reply.",
    )


@require_POST
@admin_only
def make_default(request, slug):
    model = _model(slug)
    return _done(request, lambda: services.model_make_default(model=model), "New chats start with {model}.")


@require_POST
@admin_only
def health_reset(request, slug):
    model = _model(slug)
    return _done(
        request,
        lambda: runtime.model_health_reset(model=model),
        "{model} is switched on again; it is probed afresh on its next reply.",
    )


def _speech_model(slug: str) -> SpeechModel:
    return get_object_or_404(SpeechModel, slug=slug)


@require_POST
@admin_only
def speech_install(request, slug):
    return _done(
        request,
        lambda: services.speech_model_install(slug=slug, requested_by=request.user),
        "{model} is being downloaded.",
    )


@require_POST
@admin_only
def speech_cancel(request, slug):
    model = _speech_model(slug)
    return _done(
        request,
        lambda: services.speech_model_cancel(model=model),
        "{model} stopped downloading; installing it again resumes it.",
    )


@require_POST
@admin_only
def speech_use(request, slug):
    """Voice input's model: an installed one, or ``bundled`` for the bundled tiny.en."""
    model = None if slug == "bundled" else _speech_model(slug)
    return _done(
        request,
        lambda: services.speech_model_use(model=model) or (model or "Whisper tiny.en"),
        "Voice input now transcribes with {model}.",
    )


@require_POST
@admin_only
def speech_delete(request, slug):
    model = _speech_model(slug)
    return _done(request, lambda: services.speech_model_delete(model=model) or model, "{model} was deleted.")


@require_POST
@admin_only
def token(request):
    form = TokenForm(request.POST)
    if not form.is_valid():  # e.g. longer than a token can be: the stored one stays
        messages.error(request, "The access token was not saved: " + " ".join(form.errors.get("token", [])))
        return redirect("hub:index")
    value = form.cleaned_data["token"]
    services.hub_token_set(token=value)
    messages.success(request, "The access token was saved." if value else "The access token was removed.")
    return redirect("hub:index")

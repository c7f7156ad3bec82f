from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from localai_site.core.refusals import Refusal, refusal_message

from . import selectors, services
from .forms import ImageForm, MessageForm, PersonaForm, UploadForm
from .models import Upload
from .providers.images import QUALITIES, SHAPES
from .providers.registry import models_offered
from .services.art import MAX_COUNT, STYLES

CONVERSATIONS_SHOWN = 200
RECENT_CONVERSATIONS = 10  # offered by an image's "use in chat"
IMAGE_PAGE_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def _owned_or_404(request, conversation_id):
    conversation = selectors.conversation_get_owned(user=request.user, conversation_id=conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _page(request, *, conversation=None, draft: str = "", status: int = 200):
    user = request.user
    search = request.GET.get("q", "")
    local_models, cloud_models = models_offered(include_cloud=services.cloud_allowed(user=user))
    chat_messages, has_older = (
        selectors.conversation_messages_page(conversation=conversation) if conversation else ([], False)
    )
    conversations = list(selectors.conversations_for(user=user, search=search)[:CONVERSATIONS_SHOWN])
    context = {
        "conversation": conversation,
        "socket_path": reverse("socket", urlconf="chat.routing", kwargs={"conversation_id": conversation.pk})
        if conversation
        else "",
        "conversation_groups": selectors.conversations_grouped(conversations),
        "search": search,
        "chat_messages": chat_messages,
        "has_older": has_older,
        "local_models": local_models,
        "cloud_models": cloud_models,
        "selected_model": (conversation.model if conversation else request.GET.get("model"))
        or user.default_model,
        "personas": selectors.personas_visible(user=user),
        "selected_persona": request.GET.get("persona") or user.default_persona_id,
        "draft": draft,
        "attachments_per_message": Upload.PER_MESSAGE,
        # Files sent here to be attached (an image's "use in chat"): ``?attach=<id>``.
        "attached": selectors.uploads_waiting(
            user=user, upload_ids=request.GET.getlist("attach"), conversation=conversation
        ),
        "voice_max_seconds": settings.VOICE_MAX_SECONDS,  # the recorder stops itself there
    }
    return render(request, "chat/chat.html", context, status=status)


@login_required
def home(request):
    return _page(request)


@login_required
@require_POST
def conversation_start(request):
    form = MessageForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write a message first.")
        return redirect("chat:home")
    try:
        conversation = services.conversation_create(
            owner=request.user,
            model_id=form.cleaned_data["model"],
            persona_id=form.cleaned_data["persona"],
            remember_persona=True,
        )
        services.chat_message_send(
            conversation=conversation,
            content=form.cleaned_data["content"],
            upload_ids=form.cleaned_data["uploads"],
        )
    except Refusal as refusal:
        refusal_message(request, refusal)
        return _page(request, draft=form.cleaned_data["content"], status=400)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
def conversation_detail(request, conversation_id):
    conversation = _owned_or_404(request, conversation_id)
    services.replies_fail_stale(conversation=conversation)
    return _page(request, conversation=conversation)


@login_required
@require_GET
def messages_older(request, conversation_id):
    """The page of messages before ``?before=<id>``, as HTML, for scrolling back in a long chat."""
    conversation = _owned_or_404(request, conversation_id)
    try:
        before = int(request.GET["before"])
    except (KeyError, ValueError):
        raise Http404("Say which message to load the older ones before.") from None
    page, has_older = selectors.conversation_messages_page(conversation=conversation, before_id=before)
    response = render(request, "chat/_messages.html", {"chat_messages": page})
    response["X-Has-Older"] = "1" if has_older else "0"
    return response


@login_required
@require_POST
def message_send(request, conversation_id):
    """The form path, for browsers without JavaScript; the socket does the same."""
    conversation = _owned_or_404(request, conversation_id)
    form = MessageForm(request.POST)
    try:
        if not form.is_valid():
            raise Refusal("empty", "Write a message first.")
        services.chat_message_send(
            conversation=conversation,
            content=form.cleaned_data["content"],
            model_id=form.cleaned_data["model"],
            upload_ids=form.cleaned_data["uploads"],
        )
    except Refusal as refusal:
        refusal_message(request, refusal)
        return _page(request, conversation=conversation, draft=request.POST.get("content", ""), status=400)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
@require_POST
def reply_stop(request, conversation_id):
    services.reply_stop(conversation=_owned_or_404(request, conversation_id))
    return redirect("chat:conversation", conversation_id=conversation_id)


@login_required
@require_POST
def conversation_rename(request, conversation_id):
    conversation = _owned_or_404(request, conversation_id)
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except Refusal as refusal:
        refusal_message(request, refusal)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
@require_POST
def conversation_pin(request, conversation_id):
    conversation = _owned_or_404(request, conversation_id)
    services.conversation_pin(conversation=conversation, pinned=request.POST.get("pinned") == "1")
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
@require_POST
def conversation_delete(request, conversation_id):
    services.conversation_delete(conversation=_owned_or_404(request, conversation_id))
    messages.success(request, "The conversation was deleted.")
    return redirect("chat:home")


def _model_choices(user):
    local, cloud = models_offered(include_cloud=services.cloud_allowed(user=user))
    return [(c.model_id, f"{c.label} ({c.provider_name})") for c in (*local, *cloud)]


@login_required
def persona_list(request):
    personas = selectors.personas_visible(user=request.user)
    return render(request, "chat/personas.html", {"personas": personas})


@login_required
def persona_edit(request, persona_id=None):
    persona = None
    if persona_id is not None:
        persona = selectors.persona_get_owned(user=request.user, persona_id=persona_id)
        if persona is None:
            raise Http404("No such persona of yours.")
    form = PersonaForm(request.POST or None, instance=persona, model_choices=_model_choices(request.user))
    if request.method == "POST" and form.is_valid():
        services.persona_save(owner=request.user, persona=form.save(commit=False))
        messages.success(request, f"“{form.instance.name}” was saved.")
        return redirect("chat:personas")
    return render(request, "chat/persona_form.html", {"form": form, "persona": persona})


@login_required
@require_POST
def persona_delete(request, persona_id):
    persona = selectors.persona_get_owned(user=request.user, persona_id=persona_id)
    if persona is None:
        raise Http404("No such persona of yours.")
    services.persona_delete(persona=persona)
    messages.success(request, "The persona was deleted.")
    return redirect("chat:personas")


def _upload_owned_or_404(request, upload_id):
    upload = selectors.upload_get_owned(user=request.user, upload_id=upload_id)
    if upload is None:
        raise Http404("No such file.")
    return upload


@login_required
@require_POST
def upload_new(request):
    """A file from the composer, stored before its message is sent (``chat.js`` sends the
    id with the message). Answers JSON: the file's id, or the refusal's code and words."""
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return JsonResponse({"code": "bad_upload", "error": "Choose a file to attach."}, status=400)
    conversation_id = form.cleaned_data["conversation"]
    conversation = _owned_or_404(request, conversation_id) if conversation_id else None
    try:
        upload = services.upload_save(
            owner=request.user, conversation=conversation, file=form.cleaned_data["file"]
        )
    except Refusal as refusal:
        return JsonResponse({"code": refusal.code, "error": refusal.message}, status=400)
    return JsonResponse(
        {
            "id": str(upload.pk),
            "name": upload.original_name,
            "size": filesizeformat(upload.size),
            "content_type": upload.content_type,
            "image_url": reverse("chat:upload_image", args=[upload.pk]) if upload.is_image else None,
            "delete_url": reverse("chat:upload_delete", args=[upload.pk]),
        },
        status=201,
    )


@login_required
@require_GET
def upload_image(request, upload_id):
    """An image shown in the page, to its owner only. Safe to show: the bytes are the ones
    we wrote when re-encoding it (``services.uploads``), not the ones we were given."""
    upload = _upload_owned_or_404(request, upload_id)
    if not upload.is_image:
        raise Http404("Only images are shown in the page.")
    response = FileResponse(upload.file.open("rb"), content_type=upload.content_type)
    response["Cache-Control"] = "private, max-age=86400"
    # Opened on its own, the browser's image viewer styles the page it makes around it; that
    # page holds nothing of ours but the image, and may run nothing.
    response["Content-Security-Policy"] = IMAGE_PAGE_POLICY
    return response


@login_required
@never_cache
def upload_download(request, upload_id):
    """Files go to their owner only, always as a download: never rendered by the browser."""
    upload = _upload_owned_or_404(request, upload_id)
    return FileResponse(
        upload.file.open("rb"),
        as_attachment=True,
        filename=upload.original_name,
        content_type=upload.content_type,
    )


@login_required
@require_POST
def upload_delete(request, upload_id):
    upload = _upload_owned_or_404(request, upload_id)
    services.upload_delete(upload=upload)
    if request.headers.get("Accept") == "application/json":  # a chip removed in the composer
        return HttpResponse(status=204)
    messages.success(request, f"Deleted “{upload.original_name}”.")
    return redirect(f"{reverse('accounts:privacy')}#files")


@login_required
@require_POST
def history_clear(request):
    """Settings → Privacy: delete every conversation with local models, or with cloud ones."""
    scope = request.POST.get("scope")
    if scope not in ("local", "cloud"):
        raise Http404("Say which history to clear.")
    count = services.conversations_clear(user=request.user, local=scope == "local")
    kind = "local-model" if scope == "local" else "cloud"
    messages.success(request, f"Deleted {count} {kind} conversation{'s' if count != 1 else ''}.")
    return redirect("accounts:privacy")


@login_required
@require_POST
def voice_upload(request):
    """A voice recording from the composer: answers where to ask for its words (JSON)."""
    recording = request.FILES.get("audio")
    if recording is None:
        return JsonResponse({"error": "No recording was sent."}, status=400)
    conversation_id = request.POST.get("conversation")
    conversation = _owned_or_404(request, conversation_id) if conversation_id else None
    try:
        token = services.voice_recording_save(
            owner=request.user,
            file=recording,
            # Sent when the person ticked the provider's transcription for the chat's cloud model.
            cloud_model_id=request.POST.get("cloud_model", ""),
            conversation=conversation,
        )
    except Refusal as refusal:
        return JsonResponse({"error": refusal.message, "code": refusal.code}, status=400)
    return JsonResponse({"status_url": reverse("chat:voice_status", args=[token])}, status=202)


@login_required
@require_GET
@never_cache
def voice_status(request, token):
    status = services.voice_status(owner=request.user, token=token)
    if status is None:
        raise Http404("No such recording of yours.")
    return JsonResponse({"state": status.state, "text": status.text, "error": status.message})


# --- The gallery: images made from prompts (services.art) ------------------------------


def _gallery(request, *, form: ImageForm | None = None, status: int = 200):
    user = request.user
    services.image_generations_fail_stale(user=user)
    models = services.image_models_offered(user=user)
    context = {
        "form": form or ImageForm(),
        "image_models": models,
        "generations": selectors.image_generations_for(user=user),
        "uploaded_images": selectors.uploaded_images_for(user=user),
        "recent_conversations": _recent_conversations(user),
        "shapes": SHAPES,
        "qualities": QUALITIES,
        "styles": STYLES,
        "max_count": MAX_COUNT,
        "cloud_allowed": services.cloud_allowed(user=user),
    }
    return render(request, "chat/gallery.html", context, status=status)


def _recent_conversations(user) -> list:
    """Where "use in chat" can attach an image, besides a new chat."""
    return list(selectors.conversations_for(user=user)[:RECENT_CONVERSATIONS])


def _image_request(form: ImageForm) -> dict:
    data = form.cleaned_data
    return {
        "prompt": data["prompt"],
        "model_id": data.get("model") or "",
        "shape": data.get("shape") or "square",
        "quality": data.get("quality") or "",
        "count": data.get("count") or 1,
        "style": data.get("style") or "",
        "mask": data.get("mask"),
    }


@login_required
def gallery(request):
    if request.method != "POST":
        return _gallery(request)
    form = ImageForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Describe the image first (up to 4000 characters).")
        return _gallery(request, form=form, status=400)
    try:
        generation = services.image_generation_start(owner=request.user, **_image_request(form))
    except Refusal as refusal:
        refusal_message(request, refusal)
        return _gallery(request, form=form, status=400)
    return redirect(f"{reverse('chat:gallery')}#generation-{generation.pk}")


def _generation_owned_or_404(request, generation_id):
    generation = selectors.image_generation_get_owned(user=request.user, generation_id=generation_id)
    if generation is None:
        raise Http404("No such generation of yours.")
    return generation


def _image_owned_or_404(request, image_id):
    image = selectors.generated_image_get_owned(user=request.user, image_id=image_id)
    if image is None:
        raise Http404("No such image of yours.")
    return image


@login_required
@require_GET
@never_cache
def generation_status(request, generation_id):
    """Where a generation stands, for the gallery's polling: its state and its card."""
    services.image_generations_fail_stale(user=request.user)
    generation = _generation_owned_or_404(request, generation_id)
    context = {"generation": generation, "recent_conversations": _recent_conversations(request.user)}
    html = render_to_string("chat/_generation.html", context, request=request)
    return JsonResponse({"status": generation.status, "active": generation.is_active, "html": html})


@login_required
@require_POST
def generation_delete(request, generation_id):
    services.image_generation_delete(generation=_generation_owned_or_404(request, generation_id))
    messages.success(request, "Deleted the prompt and its images.")
    return redirect("chat:gallery")


@login_required
@require_GET
def generated_image(request, image_id):
    """An image shown in the page, to its owner only (the bytes are ones we wrote)."""
    image = _image_owned_or_404(request, image_id)
    response = FileResponse(image.file.open("rb"), content_type=image.content_type)
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Security-Policy"] = IMAGE_PAGE_POLICY
    return response


@login_required
@require_GET
@never_cache
def generated_image_download(request, image_id):
    """The image as a download, as PNG or WebP (``?format=webp``)."""
    image = _image_owned_or_404(request, image_id)
    kind = "webp" if request.GET.get("format") == "webp" else "png"
    data, content_type = services.generated_image_as(image=image, kind=kind)
    response = HttpResponse(data, content_type=content_type)
    stamp = timezone.localtime(image.created_at).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="image-{stamp}.{kind}"'
    return response


def _back_to_images(request):
    """Deleting from Settings → Privacy goes back there; from the gallery, to the gallery."""
    if request.POST.get("next") == "privacy":
        return redirect(f"{reverse('accounts:privacy')}#images")
    return redirect("chat:gallery")


@login_required
@require_POST
def generated_image_delete(request, image_id):
    services.generated_image_delete(image=_image_owned_or_404(request, image_id))
    messages.success(request, "The image was deleted.")
    return _back_to_images(request)


@login_required
@require_POST
def generated_images_clear(request):
    count = services.generated_images_clear(user=request.user)
    messages.success(request, f"Deleted {count} image{'' if count == 1 else 's'} and their prompts.")
    return _back_to_images(request)


def _image_edit(request, *, source: dict, back: str, default_model: str = ""):
    """Change an image: a prompt, and a mask painted over it (static/chat/gallery.js).
    ``source``: the service's keyword for the image (``source`` or ``source_upload``)."""
    (stored,) = source.values()
    form = ImageForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                generation = services.image_generation_start(
                    owner=request.user, **source, **{**_image_request(form), "count": 1}
                )
            except Refusal as refusal:
                refusal_message(request, refusal)
            else:
                return redirect(f"{reverse('chat:gallery')}#generation-{generation.pk}")
        else:
            messages.error(request, "Describe the change first (up to 4000 characters).")
        status = 400
    width, height = services.image_size(stored.file)
    context = {
        "image_url": reverse("chat:image" if "source" in source else "chat:upload_image", args=[stored.pk]),
        "width": width,
        "height": height,
        "back": back,
        "form": form,
        "image_models": services.image_models_offered(user=request.user),
        "default_model": default_model,
    }
    return render(request, "chat/image_edit.html", context, status=status)


@login_required
def generated_image_edit(request, image_id):
    image = _image_owned_or_404(request, image_id)
    back = f"{reverse('chat:gallery')}#image-{image.pk}"
    return _image_edit(request, source={"source": image}, back=back, default_model=image.generation.model)


@login_required
def upload_image_edit(request, upload_id):
    upload = _upload_owned_or_404(request, upload_id)
    if not upload.is_image:
        raise Http404("Only images can be edited.")
    return _image_edit(request, source={"source_upload": upload}, back=reverse("chat:gallery"))


@login_required
@require_POST
def generated_image_to_chat(request, image_id):
    """Attach the image to a conversation (``conversation``), or to a new chat."""
    image = _image_owned_or_404(request, image_id)
    conversation_id = request.POST.get("conversation") or ""
    conversation = _owned_or_404(request, conversation_id) if conversation_id else None
    try:
        upload = services.generated_image_to_chat(image=image, conversation=conversation)
    except Refusal as refusal:
        refusal_message(request, refusal)
        return redirect("chat:gallery")
    target = reverse("chat:conversation", args=[conversation.pk]) if conversation else reverse("chat:home")
    return redirect(f"{target}?attach={upload.pk}")

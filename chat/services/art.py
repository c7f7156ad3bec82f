"""Images made from prompts: a generation asked for (checked, counted against the person's
plan, queued), made by a worker on the cloud queue, its images kept privately as uploads
are (re-encoded, no metadata); generations that outlived their worker, deleting images, and
taking one into a chat."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from io import BytesIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing.models import UsageKind
from billing.services import quota_return, quota_spend
from chat.models import (
    UPLOAD_EXTENSIONS,
    Conversation,
    GeneratedImage,
    ImageGeneration,
    ImageStatus,
    Message,
    MessageStatus,
    Provider,
    Role,
    Upload,
)
from chat.providers import ModelChoice, ProviderError, model_resolve
from chat.providers.images import QUALITIES, SHAPES, ImageRequest, image_provider_for
from chat.providers.registry import models_offered
from localai_site.core.files import files_delete_after_commit
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import TaskQueueUnavailable, task_enqueue

from .choice import cloud_allowed, model_choose, restriction_check
from .replies import (
    conversation_lock_idle,
    last_reply_remove,
    message_edit,
    message_publish,
    message_rewrite,
    message_send,
    reply_start,
)
from .uploads import image_reencode, upload_save

logger = logging.getLogger(__name__)

PROMPT_MAX_CHARS = 4000
MAX_COUNT = 4  # images one generation may ask for
ACTIVE_PER_PERSON = 3  # generations one person may have waiting or being made
# Style presets: a phrase added to the prompt, said in the gallery as it is sent.
STYLES = {
    "photo": "as a realistic photograph",
    "illustration": "as a flat digital illustration",
    "watercolour": "as a watercolour painting",
    "pixel": "as pixel art",
    "render": "as a 3D render",
}
IMAGE_COMMAND = "/image"
QUEUE_UNREACHABLE = "The task queue (Redis) cannot be reached, so no worker could make the images. Try again."


def image_models_offered(*, user: User) -> list[ModelChoice]:
    """The image models ``user`` may use: none for a local-only account or with cloud off."""
    _, cloud = models_offered(include_cloud=cloud_allowed(user=user))
    return [choice for choice in cloud if choice.cloud_model is not None and choice.cloud_model.makes_images]


def _image_model_choose(*, user: User, model_id: str) -> ModelChoice:
    if not model_id:
        offered = image_models_offered(user=user)
        if not offered:
            raise Refusal("no_image_model", _no_image_model(user))
        return offered[0]
    choice = model_choose(user=user, model_id=model_id)  # local-only accounts, cloud off, unknown
    if choice.cloud_model is None or not choice.cloud_model.makes_images:
        names = [f"{c.label} ({c.provider_name})" for c in image_models_offered(user=user)]
        others = f" Models that do: {', '.join(names)}." if names else ""
        raise Refusal("no_image_model", f"{choice.label} does not make images.{others}")
    return choice


def _no_image_model(user: User) -> str:
    if user.local_only:
        return (
            "Your account is set to local models only (Settings → Privacy), and images are made in the cloud."
        )
    if not cloud_allowed(user=user):
        return "Cloud providers are turned off on this instance, and images are made in the cloud."
    return "No image model is enabled on this instance; an admin can enable one under Cloud providers."


def _prompt_check(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise Refusal("empty", "Describe the image first.")
    if len(prompt) > PROMPT_MAX_CHARS:
        raise Refusal("too_long", f"The prompt is {len(prompt)} characters; the limit is {PROMPT_MAX_CHARS}.")
    return prompt


def _settings_check(*, shape: str, quality: str, count: int, style: str) -> None:
    if shape not in SHAPES:
        raise Refusal("bad_shape", f"Choose a shape: {', '.join(SHAPES)}.")
    if quality and quality not in QUALITIES:
        raise Refusal("bad_quality", f"Choose a quality: {', '.join(QUALITIES)}.")
    if not 1 <= count <= MAX_COUNT:
        raise Refusal("bad_count", f"Ask for 1 to {MAX_COUNT} images at a time.")
    if style and style not in STYLES:
        raise Refusal("bad_style", "Choose one of the styles offered.")


def _mask_kept(mask: UploadedFile | None, source_size: tuple[int, int]) -> ContentFile | None:
    """The painted mask, checked: a PNG of the source image's size, written again."""
    if mask is None:
        return None
    try:
        kept = image_reencode(file=mask, name="mask.png")
    except Refusal:
        raise Refusal("bad_mask", "The mask could not be read: paint it again.") from None
    if kept.content_type != "image/png" or (kept.width, kept.height) != source_size:
        raise Refusal("bad_mask", "The mask does not match the image: paint it again.")
    return kept.file


def _shape_of(size: tuple[int, int]) -> str:
    width, height = size
    return "landscape" if width > 1.2 * height else "portrait" if height > 1.2 * width else "square"


def image_size(file) -> tuple[int, int]:
    """A stored image's width and height, read from its header."""
    from PIL import Image

    with file.open("rb") as handle, Image.open(handle) as image:
        return image.size


def image_generation_start(
    *,
    owner: User,
    prompt: str,
    model_id: str = "",
    shape: str = "square",
    quality: str = "",
    count: int = 1,
    style: str = "",
    source: GeneratedImage | None = None,
    source_upload: Upload | None = None,
    mask: UploadedFile | None = None,
    message: Message | None = None,
) -> ImageGeneration:
    """Ask for ``count`` images (an edit of ``source`` or ``source_upload`` when given, changing
    only where ``mask`` is transparent); made by a worker once this commits, and shown in the
    chat reply ``message`` too when given. Each image counts against the owner's plan; a
    refusal keeps nothing and spends nothing."""
    restriction_check(user=owner)
    prompt = _prompt_check(prompt)
    _settings_check(shape=shape, quality=quality, count=count, style=style)
    choice = _image_model_choose(user=owner, model_id=model_id)
    assert choice.cloud_model is not None  # image models are cloud models, for now
    if (source is not None and source.owner_id != owner.pk) or (
        source_upload is not None and (source_upload.owner_id != owner.pk or not source_upload.is_image)
    ):
        raise Refusal("not_found", "No such image of yours.")
    start = source.file if source is not None else source_upload.file if source_upload is not None else None
    kept_mask = None
    if start is not None:
        size = image_size(start)
        shape = _shape_of(size)  # an edit keeps the shape of its image
        kept_mask = _mask_kept(mask, size)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=owner.pk).first()  # two tabs at once: one waits
        active = ImageGeneration.objects.filter(
            owner=owner, status__in=(ImageStatus.QUEUED, ImageStatus.GENERATING)
        )
        if active.count() >= ACTIVE_PER_PERSON:
            raise Refusal(
                "busy", f"You have {ACTIVE_PER_PERSON} generations under way; wait for one to finish."
            )
        for _ in range(count):
            quota_spend(user=owner, kind=UsageKind.IMAGE, model_id=choice.model_id)
        generation = ImageGeneration(
            owner=owner,
            prompt=prompt,
            style=style,
            shape=shape,
            size=image_provider_for(choice.cloud_model).size_for(ImageRequest(prompt="", shape=shape)),
            quality=quality,
            count=count,
            model=choice.model_id,
            provider=choice.provider,
            source=source,
            source_upload=source_upload,
            sent_image=start is not None,
            message=message,
        )
        if kept_mask is not None:
            generation.mask.save("mask.png", kept_mask, save=False)
        try:
            generation.save()
        except BaseException:
            generation.mask.delete(save=False)
            raise
        transaction.on_commit(lambda: _enqueue(generation))
    return generation


def _enqueue(generation: ImageGeneration) -> None:
    try:
        task_enqueue("chat.generate_images", str(generation.pk), queue=Queue.CLOUD)
    except TaskQueueUnavailable as exc:
        logger.warning("Image generation %s could not be queued: %s", generation.pk, exc)
        _fail(generation, QUEUE_UNREACHABLE)
        generation.status, generation.error = ImageStatus.FAILED, QUEUE_UNREACHABLE


def _fail(generation: ImageGeneration, error: str) -> None:
    """No images: the generation says why, and what it spent of the plan is given back."""
    if ImageGeneration.objects.transition(
        generation.pk, to=ImageStatus.FAILED, error=error, finished_at=timezone.now()
    ):
        quota_return(
            user=generation.owner,
            kind=UsageKind.IMAGE,
            spent_at=generation.created_at,
            units=generation.count,
        )
    _mask_forget(generation)
    if generation.message_id is not None:
        _chat_reply_end(generation.message_id, error=error)


def _mask_forget(generation: ImageGeneration) -> None:
    """The painted mask is kept only until the provider has had it."""
    if generation.mask:
        generation.mask.delete(save=False)
        ImageGeneration.objects.filter(pk=generation.pk).update(mask="")


def _png(file) -> bytes:
    """A source image as PNG, the one type every image API takes for an edit."""
    from PIL import Image

    with file.open("rb") as handle, Image.open(handle) as image:
        out = BytesIO()
        image.save(out, "PNG")
        return out.getvalue()


def _request_for(generation: ImageGeneration) -> ImageRequest:
    style = STYLES.get(generation.style)
    start = generation.source or generation.source_upload
    if generation.sent_image and start is None:
        raise Refusal("source_gone", "The image to edit was deleted before it could be sent.")
    return ImageRequest(
        prompt=f"{generation.prompt}, {style}" if style else generation.prompt,
        shape=generation.shape,
        quality=generation.quality,
        count=generation.count,
        image=_png(start.file) if start is not None else None,
        mask=generation.mask.read() if generation.mask else None,
    )


def _images_keep(generation: ImageGeneration, made: list[bytes], provider_name: str) -> list[GeneratedImage]:
    """The provider's images written again as we keep images; Refusal when one is not an image."""

    kept = []
    try:
        for index, data in enumerate(made):
            image = image_reencode(file=SimpleUploadedFile(f"image-{index}", data), name="image")
            image_row = GeneratedImage(
                owner_id=generation.owner_id,
                generation=generation,
                content_type=image.content_type,
                width=image.width,
                height=image.height,
                size=image.file.size,
            )
            image_row.file.save("image", image.file, save=False)
            kept.append(image_row)
    except Refusal:
        for image_row in kept:
            image_row.file.delete(save=False)
        raise Refusal("not_an_image", f"{provider_name} sent something that is not an image.") from None
    return kept


def image_generation_run(*, generation_id: uuid.UUID) -> None:
    """Make a queued generation's images (the ``chat.generate_images`` task)."""
    generation = (
        ImageGeneration.objects.select_related("owner", "source", "source_upload")
        .filter(pk=generation_id, status=ImageStatus.QUEUED)
        .first()
    )
    if generation is None or not ImageGeneration.objects.transition(
        generation.pk, to=ImageStatus.GENERATING, source=ImageStatus.QUEUED
    ):
        return  # deleted, or taken by another worker
    choice = model_resolve(generation.model)
    try:
        if choice is None or choice.cloud_model is None or not choice.cloud_model.makes_images:
            raise Refusal("model_gone", "This image model was switched off before the images were made.")
        if not cloud_allowed(user=generation.owner):
            raise Refusal("cloud_off", f"{_no_image_model(generation.owner)} Nothing was sent.")
        restriction_check(user=generation.owner)  # restricted since it was asked for
        provider = image_provider_for(choice.cloud_model)
        made = provider.images_make(_request_for(generation))
        images = _images_keep(generation, made[: generation.count], choice.provider_name)
    except (ProviderError, Refusal) as refusal:
        _fail(generation, refusal.message)
        return
    except Exception:
        logger.exception("Image generation %s failed", generation.pk)
        _fail(generation, "Making the images failed on this instance.")
        raise
    with transaction.atomic():
        if not ImageGeneration.objects.filter(pk=generation.pk).exists():  # deleted meanwhile
            for image in images:
                image.file.delete(save=False)
            return
        GeneratedImage.objects.bulk_create(images)
        ImageGeneration.objects.transition(
            generation.pk, to=ImageStatus.DONE, source=ImageStatus.GENERATING, finished_at=timezone.now()
        )
    _mask_forget(generation)
    if generation.message_id is not None:
        _chat_reply_end(generation.message_id, images=images)


def image_generations_fail_stale(*, user: User) -> int:
    """Generations whose worker went away (it died, or the instance restarted) say so."""
    limit = timedelta(seconds=2 * settings.IMAGE_TIMEOUT_S + 60)
    stale = list(
        ImageGeneration.objects.select_related("owner").filter(
            owner=user,
            status__in=(ImageStatus.QUEUED, ImageStatus.GENERATING),
            created_at__lt=timezone.now() - limit,
        )
    )
    for generation in stale:
        _fail(generation, "No worker finished making these images. Try again.")
    return len(stale)


@transaction.atomic
def image_generation_delete(*, generation: ImageGeneration) -> None:
    """A generation with its prompt and its images."""
    files_delete_after_commit([generation.mask, *(image.file for image in generation.images.all())])
    generation.delete()


@transaction.atomic
def generated_image_delete(*, image: GeneratedImage) -> None:
    """One image; its generation (the prompt) goes with its last image."""
    files_delete_after_commit([image.file])
    generation = image.generation
    image.delete()
    if generation.status == ImageStatus.DONE and not generation.images.exists():
        generation.delete()


@transaction.atomic
def generated_images_clear(*, user: User) -> int:
    """Every image and prompt of ``user``; returns how many images went."""
    generations = ImageGeneration.objects.filter(owner=user)
    images = GeneratedImage.objects.filter(owner=user)
    files_delete_after_commit([*(image.file for image in images), *(g.mask for g in generations if g.mask)])
    count = images.count()
    generations.delete()
    return count


def generated_image_as(*, image: GeneratedImage, kind: str) -> tuple[bytes, str]:
    """The image's bytes as ``kind`` ("png" or "webp"), converted when it is kept otherwise."""
    from PIL import Image

    content_type = f"image/{kind}"
    with image.file.open("rb") as handle:
        if image.content_type == content_type:
            return handle.read(), content_type
        with Image.open(handle) as decoded:
            out = BytesIO()
            decoded.save(out, kind.upper(), **({"lossless": True} if kind == "webp" else {}))
    return out.getvalue(), content_type


def generated_image_to_chat(*, image: GeneratedImage, conversation: Conversation | None) -> Upload:
    """A copy of ``image`` as a file waiting to be sent in ``conversation`` (or a new chat)."""
    name = (
        f"image-{timezone.localtime(image.created_at):%Y%m%d-%H%M%S}{UPLOAD_EXTENSIONS[image.content_type]}"
    )
    with image.file.open("rb") as handle:
        copy = SimpleUploadedFile(name, handle.read(), content_type=image.content_type)
    return upload_save(owner=image.owner, conversation=conversation, file=copy)


# --- /image in a chat -------------------------------------------------------------------


def _image_command(content: object) -> str | None:
    """The prompt of ``/image <prompt>``; None for any other message."""
    if not isinstance(content, str):
        return None
    head, _, prompt = content.strip().partition(" ")
    return prompt.strip() if head == IMAGE_COMMAND else None


def chat_message_send(
    *,
    conversation: Conversation,
    content: str,
    model_id: str | None = None,
    upload_ids: Sequence[uuid.UUID] = (),
) -> tuple[Message, Message]:
    """A message sent in a chat: ``/image <prompt>`` makes an image there with the
    conversation's provider (``chat_image_send``); anything else is ``message_send``."""
    prompt = _image_command(content)
    if prompt is None:
        return message_send(
            conversation=conversation, content=content, model_id=model_id, upload_ids=upload_ids
        )
    return chat_image_send(conversation=conversation, prompt=prompt, model_id=model_id, upload_ids=upload_ids)


def _chat_image_model(*, conversation: Conversation, choice: ModelChoice) -> ModelChoice:
    """The image model of the provider this cloud conversation talks to."""
    if choice.cloud_model is None or (
        conversation.provider == Provider.LOCAL and conversation.messages.exists()
    ):
        raise Refusal(
            "image_local",
            "/image works in a chat with a cloud model, since images are made in the cloud; "
            "this one stays on this instance. Use Images in the top bar, or start a cloud chat.",
        )
    provider = choice.cloud_model.provider
    same = [c for c in image_models_offered(user=conversation.owner) if c.provider == provider.slug]
    if not same:
        raise Refusal(
            "no_image_model",
            f"{provider.name} makes no images on this instance: an admin can enable an image model for it.",
        )
    return same[0]


@transaction.atomic
def chat_image_send(
    *,
    conversation: Conversation,
    prompt: str,
    model_id: str | None = None,
    upload_ids: Sequence[uuid.UUID] = (),
) -> tuple[Message, Message]:
    """``/image <prompt>`` in a cloud chat: the person's message, and a reply in which the image
    appears once the conversation's provider has made it (also kept in the gallery)."""
    if upload_ids:
        raise Refusal("image_attachments", "To change an image, open it in Images and choose Edit.")
    conversation = conversation_lock_idle(conversation)  # the checks a message passes: one reply at a time
    choice = model_choose(user=conversation.owner, model_id=model_id or conversation.model)
    checked = _prompt_check(prompt)
    user_message = Message.objects.create(
        conversation=conversation,
        role=Role.USER,
        content=f"{IMAGE_COMMAND} {checked}",
        model=choice.model_id,
        provider=choice.provider,
    )
    reply = _image_reply_start(conversation, choice, checked, user_message)
    conversation.model, conversation.provider = choice.model_id, choice.provider
    conversation.title = conversation.title or f"Image: {checked}"[:60]
    conversation.save(update_fields=["model", "provider", "title", "updated_at"])
    return user_message, reply


@transaction.atomic
def chat_reply_regenerate(*, conversation: Conversation, message_id: int) -> Message:
    """Regenerate in a chat: the reply to an ``/image`` message is a new image, any other
    reply is written again by the chat model (as ``reply_regenerate`` does)."""
    conversation = conversation_lock_idle(conversation)
    asked = conversation.messages.filter(role=Role.USER, id__lt=message_id).order_by("-id").first()
    prompt = _image_command(asked.content) if asked is not None else None
    choice = model_choose(user=conversation.owner, model_id=conversation.model)
    last_reply_remove(conversation=conversation, message_id=message_id)
    if prompt is None:
        return reply_start(conversation, choice)
    return _image_reply_start(conversation, choice, prompt)


@transaction.atomic
def chat_message_edit(*, conversation: Conversation, message_id: int, content: str) -> Message:
    """A message edited in a chat is answered again: with an image when it now reads
    ``/image <prompt>``, otherwise by the chat model (``message_edit``)."""
    prompt = _image_command(content)
    if prompt is None:
        return message_edit(conversation=conversation, message_id=message_id, content=content)
    checked = _prompt_check(prompt)
    conversation = conversation_lock_idle(conversation)
    choice = model_choose(user=conversation.owner, model_id=conversation.model)
    message = message_rewrite(
        conversation=conversation, message_id=message_id, text=f"{IMAGE_COMMAND} {checked}"
    )
    return _image_reply_start(conversation, choice, checked, message)


def _image_reply_start(
    conversation: Conversation, choice: ModelChoice, prompt: str, *announce: Message
) -> Message:
    """The empty reply to an ``/image`` message and its generation with the image model of the
    chat's provider; shown after commit (in the caller's transaction: a refusal undoes it all)."""
    image_model = _chat_image_model(conversation=conversation, choice=choice)
    reply = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        status=MessageStatus.QUEUED,
        model=image_model.model_id,
        provider=image_model.provider,
    )
    image_generation_start(
        owner=conversation.owner, prompt=prompt, model_id=image_model.model_id, message=reply
    )

    def after_commit() -> None:
        for message in (*announce, reply):
            message_publish(message)

    transaction.on_commit(after_commit)
    return reply


def _chat_reply_end(message_id: int, *, images: Sequence[GeneratedImage] = (), error: str = "") -> None:
    """The /image reply shows the images made (a copy attached to it), or why there are none."""
    reply = Message.objects.select_related("conversation__owner").filter(pk=message_id).first()
    if reply is None:
        return  # the chat was deleted meanwhile; the images stay in the gallery
    now = timezone.now()
    if error:
        moved = Message.objects.transition(reply.pk, to=MessageStatus.FAILED, error=error, finished_at=now)
    elif Message.objects.transition(reply.pk, to=MessageStatus.STREAMING, source=MessageStatus.QUEUED):
        try:
            for image in images:
                upload = generated_image_to_chat(image=image, conversation=reply.conversation)
                Upload.objects.filter(pk=upload.pk).update(message=reply)
        except Refusal as refusal:  # the plan's file size, restricted processing
            shown = f"The image is in your gallery (Images) but could not be added here: {refusal.message}"
            moved = Message.objects.transition(
                reply.pk, to=MessageStatus.FAILED, error=shown, finished_at=now
            )
        else:
            moved = Message.objects.transition(reply.pk, to=MessageStatus.DONE, finished_at=now)
    else:
        moved = False  # stopped meanwhile
    if moved:
        reply.refresh_from_db()
        message_publish(reply)

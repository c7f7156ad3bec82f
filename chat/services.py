from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import PurePath

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from accounts.analytics import usage_record
from accounts.models import UsageEventName, User
from accounts.selectors import instance_settings_get
from localai_site.core.crypto import secret_encrypt, secret_hint
from localai_site.core.files import files_delete_after_commit
from localai_site.core.realtime import publisher
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import TaskQueueUnavailable, task_enqueue

from . import live
from .events import message_event, removed_event
from .models import (
    ACTIVE_STATUSES,
    CloudModel,
    CloudProvider,
    Conversation,
    Message,
    MessageStatus,
    Persona,
    Provider,
    Role,
    Upload,
)
from .providers import ChatTurn, GenerationParams, ModelChoice, model_resolve, provider_for
from .providers.cloud import PRESET_BASE_URLS, provider_models_list
from .selectors import persona_get_visible
from .streaming import ReplyHeartbeat, ReplyWriter
from .uploads import upload_kind

logger = logging.getLogger(__name__)

TITLE_CHARS = 60
# What a chat template adds around each message (role markers, separators), in tokens.
TURN_OVERHEAD_TOKENS = 8
COUNT_BATCH = 32  # messages whose tokens are counted in one call
_FINAL_FIELDS = (
    "content",
    "status",
    "error",
    "ttft_ms",
    "duration_ms",
    "finished_at",
    "prompt_tokens",
    "completion_tokens",
    "omitted_turns",
)


def cloud_allowed(user: User) -> bool:
    return instance_settings_get().cloud_enabled and not user.local_only


def _model_choose(*, user: User, model_id: str | None) -> ModelChoice:
    choice = model_resolve(model_id)
    if choice is None:
        if model_id:
            raise Refusal("unknown_model", f"The model {model_id!r} is not available on this instance.")
        raise Refusal("no_model", "No model is installed yet; an admin can add one in the model hub.")
    if not choice.is_local and not cloud_allowed(user):
        if user.local_only:
            raise Refusal("local_only", "Your account is set to local models only (Settings → Privacy).")
        raise Refusal("cloud_off", "Cloud providers are turned off on this instance.")
    if choice.local_model is not None and choice.local_model.unhealthy_reason:
        raise Refusal(
            "model_unhealthy",
            f"{choice.label} is switched off: {choice.local_model.unhealthy_reason} "
            "An admin can check it again on the Models page; pick another model meanwhile.",
        )
    return choice


def _content_check(content: object) -> str:
    if not isinstance(content, str) or not content.strip():
        raise Refusal("empty", "Write a message first.")
    size = len(content.encode("utf-8"))
    if size > settings.CHAT_MAX_MESSAGE_BYTES:
        raise Refusal(
            "too_long",
            f"The message is {size // 1024} KB; the limit is {settings.CHAT_MAX_MESSAGE_BYTES // 1024} KB.",
        )
    return content.strip()


def _publish(message: Message) -> None:
    publisher.publish(message.conversation.group_name, message_event(message))


def _persona_choose(*, user: User, persona_id: int | None) -> Persona | None:
    if persona_id is None:
        return None
    persona = persona_get_visible(user=user, persona_id=persona_id)
    if persona is None:
        raise Refusal("unknown_persona", "That persona does not exist or is not yours.")
    return persona


def conversation_create(
    *, owner: User, model_id: str | None = None, persona_id: int | None = None, remember_persona: bool = False
) -> Conversation:
    """A new conversation; ``remember_persona`` makes its persona the person's default."""
    persona = _persona_choose(user=owner, persona_id=persona_id)
    wanted = model_id or (persona.default_model if persona else "") or owner.default_model
    try:
        choice = _model_choose(user=owner, model_id=wanted)
    except Refusal:
        if model_id:
            raise
        choice = _model_choose(user=owner, model_id=None)  # a remembered default that is gone
    if remember_persona and owner.default_persona != persona:
        owner.default_persona = persona
        owner.save(update_fields=["default_persona"])
    conversation = Conversation.objects.create(
        owner=owner, model=choice.model_id, provider=choice.provider, persona=persona
    )
    usage_record(
        user=owner, name=UsageEventName.CONVERSATION_CREATED, model=choice.model_id, provider=choice.provider
    )
    return conversation


def _check_privacy_line(conversation: Conversation, choice: ModelChoice) -> None:
    """A conversation that used a local model never goes to a cloud provider."""
    if not choice.is_local and conversation.provider == Provider.LOCAL and conversation.messages.exists():
        raise Refusal(
            "stays_local",
            f"This conversation used a local model, so it stays on this instance. "
            f"Start a new chat to use {choice.provider_name}.",
        )


def _check_not_restricted(user: User) -> None:
    if user.processing_restricted:
        raise Refusal(
            "restricted",
            "Processing of your data is restricted: you can read and export it, "
            "but nothing new is processed.",
        )


def _lock_idle(conversation: Conversation) -> Conversation:
    """Lock the conversation row: two tabs acting at once must not start two replies."""
    locked = Conversation.objects.select_for_update().select_related("owner").get(pk=conversation.pk)
    _check_not_restricted(locked.owner)
    if locked.messages.filter(status__in=ACTIVE_STATUSES).exists():
        raise Refusal("busy", "A reply is still being written. Wait for it or press Stop.")
    return locked


QUEUE_UNREACHABLE = (
    "The task queue (Redis) cannot be reached, so no worker could take this reply. Try again in a moment."
)


def _reply_start(conversation: Conversation, choice: ModelChoice, *announce: Message) -> Message:
    """Create the empty reply; after commit, show it and hand it to a worker."""
    reply = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        status=MessageStatus.QUEUED,
        model=choice.model_id,
        provider=choice.provider,
    )

    def after_commit() -> None:
        for message in (*announce, reply):
            _publish(message)
        try:
            task_enqueue("chat.generate_reply", reply.pk, queue=choice.queue())
        except TaskQueueUnavailable as exc:
            # No worker will ever see it: say so now rather than leave it queued. The caller
            # reads the failure from ``reply`` (the socket tells its browser directly: the
            # live events go through Redis too).
            logger.warning("Reply %s could not be queued: %s", reply.pk, exc)
            now = timezone.now()
            if Message.objects.filter(pk=reply.pk, status=MessageStatus.QUEUED).update(
                status=MessageStatus.FAILED, error=QUEUE_UNREACHABLE, finished_at=now
            ):
                reply.status, reply.error, reply.finished_at = MessageStatus.FAILED, QUEUE_UNREACHABLE, now
                _publish(reply)

    transaction.on_commit(after_commit)
    return reply


@transaction.atomic
def message_send(
    *, conversation: Conversation, content: str, model_id: str | None = None
) -> tuple[Message, Message]:
    """Save the user's message and an empty reply, then start generating it after commit."""
    text = _content_check(content)
    conversation = _lock_idle(conversation)  # fresh from the database: the socket's copy may be old
    owner = conversation.owner
    choice = _model_choose(user=owner, model_id=model_id or conversation.model)
    _check_privacy_line(conversation, choice)

    user_message = Message.objects.create(
        conversation=conversation,
        role=Role.USER,
        content=text,
        model=choice.model_id,
        provider=choice.provider,
    )
    conversation.model = choice.model_id
    conversation.provider = choice.provider
    if not conversation.title:
        conversation.title = _title_from(text)
    conversation.save(update_fields=["model", "provider", "title", "updated_at"])
    if owner.default_model != choice.model_id:
        owner.default_model = choice.model_id
        owner.save(update_fields=["default_model"])
    usage_record(
        user=owner, name=UsageEventName.MESSAGE_SENT, model=choice.model_id, provider=choice.provider
    )
    return user_message, _reply_start(conversation, choice, user_message)


@transaction.atomic
def reply_regenerate(*, conversation: Conversation, message_id: int) -> Message:
    """Replace the last reply with a new one written from the same history."""
    conversation = _lock_idle(conversation)
    last = conversation.messages.order_by("-id").first()
    if last is None or last.pk != message_id or last.role != Role.ASSISTANT:
        raise Refusal("not_last_reply", "Only the last reply can be written again.")
    choice = _model_choose(user=conversation.owner, model_id=conversation.model)
    last.delete()
    publisher.publish(conversation.group_name, removed_event([message_id]))
    return _reply_start(conversation, choice)


@transaction.atomic
def message_edit(*, conversation: Conversation, message_id: int, content: str) -> Message:
    """Change a sent message and answer it again; what followed it is replaced."""
    text = _content_check(content)
    conversation = _lock_idle(conversation)
    message = conversation.messages.filter(pk=message_id, role=Role.USER).first()
    if message is None:
        raise Refusal("not_found", "There is no message of yours with that id here.")
    choice = _model_choose(user=conversation.owner, model_id=conversation.model)
    later = list(conversation.messages.filter(id__gt=message.pk).values_list("id", flat=True))
    conversation.messages.filter(id__in=later).delete()
    message.content = text
    message.save(update_fields=["content"])
    publisher.publish(conversation.group_name, removed_event(later))
    return _reply_start(conversation, choice, message)


def persona_save(*, owner: User, persona: Persona) -> Persona:
    """A person's own persona; sharing with everyone is for admins, in the admin."""
    persona.owner = owner
    persona.is_shared = False
    if persona.default_model and model_resolve(persona.default_model) is None:
        raise Refusal("unknown_model", "That model is not available on this instance.")
    persona.save()
    return persona


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(str(title).split())
    if not title:
        raise Refusal("empty", "A title cannot be empty.")
    conversation.title = title[:200]
    conversation.save(update_fields=["title"])
    return conversation


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    conversation.pinned = pinned
    conversation.save(update_fields=["pinned"])
    return conversation


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _history(reply: Message) -> list[ChatTurn]:
    earlier = (
        Message.objects.filter(conversation_id=reply.conversation_id, id__lt=reply.pk)
        .filter(Q(role=Role.USER) | Q(status__in=[MessageStatus.DONE, MessageStatus.STOPPED]))
        .exclude(content="")
        .order_by("id")
        .values_list("role", "content")
    )
    return [ChatTurn(role=role, content=content) for role, content in earlier]


def _prompt_for(reply: Message, provider, context_length: int, max_tokens: int) -> tuple[list[ChatTurn], int]:
    """The persona's system prompt and as much recent history as fits the context window.

    Returns the turns and how many older ones were left out. Tokens are counted newest
    first, a few dozen messages per call: a local model counts in its runner process.
    """
    persona = reply.conversation.persona
    system = [ChatTurn(role=Role.SYSTEM, content=persona.system_prompt)] if persona else []
    history = _history(reply)
    budget = context_length - max_tokens - sum(provider.token_counts([t.content for t in system]))
    kept: list[ChatTurn] = []
    newest_first = history[::-1]
    for start in range(0, len(newest_first), COUNT_BATCH):
        batch = newest_first[start : start + COUNT_BATCH]
        for turn, tokens in zip(batch, provider.token_counts([t.content for t in batch]), strict=True):
            cost = tokens + TURN_OVERHEAD_TOKENS
            if kept and cost > budget:
                # The newest message always goes, even alone; the model says if it is too long.
                return system + kept[::-1], len(history) - len(kept)
            kept.append(turn)
            budget -= cost
    return system + kept[::-1], len(history) - len(kept)


def reply_generate(*, message_id: int) -> None:
    """Write the reply ``message_id`` with its model, streaming it to every open socket."""
    started = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED).update(
        status=MessageStatus.STREAMING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if not started:
        return  # stopped before a worker got to it, or already taken
    reply = Message.objects.select_related("conversation__persona", "conversation__owner").get(pk=message_id)
    _publish(reply)
    writer = ReplyWriter(message=reply, group=reply.conversation.group_name)
    usage = None
    try:
        with ReplyHeartbeat(message_id=reply.pk, cancel=writer.cancel):
            choice = _model_choose(user=reply.conversation.owner, model_id=reply.model)
            provider = provider_for(choice)
            persona = reply.conversation.persona
            temperature = persona.temperature if persona and persona.temperature is not None else None
            params = GenerationParams(
                max_tokens=settings.CHAT_MAX_TOKENS,
                temperature=settings.CHAT_TEMPERATURE if temperature is None else temperature,
            )
            turns, reply.omitted_turns = _prompt_for(
                reply, provider, choice.context_length, params.max_tokens
            )
            for delta in provider.stream(turns, params, writer.cancel):
                if delta.text:
                    writer.add(delta.text)
                if delta.completion_tokens is not None:
                    usage = delta
            writer.flush()
        status = MessageStatus.STOPPED if writer.cancel.is_set() else MessageStatus.DONE
        error = ""
    except Refusal as exc:
        status, error = MessageStatus.FAILED, exc.message
    except Exception:
        logger.exception("Generating reply %s failed", message_id)
        status, error = MessageStatus.FAILED, "The model failed while writing this reply."
    reply.content = writer.text
    reply.status = status
    reply.error = error[:500]
    reply.ttft_ms = writer.ttft_ms
    reply.duration_ms = writer.elapsed_ms()
    reply.finished_at = timezone.now()
    if usage is not None:
        reply.prompt_tokens = usage.prompt_tokens
        reply.completion_tokens = usage.completion_tokens
    # Only while it is still ours: a reply failed as stale, or removed by a regenerate,
    # while this worker was slow stays as it is now.
    written = Message.objects.filter(pk=reply.pk, status=MessageStatus.STREAMING).update(
        **{name: getattr(reply, name) for name in _FINAL_FIELDS}
    )
    live.live_state_clear(reply.pk)
    if not written:
        logger.info("Reply %s was failed or removed meanwhile; its late result is dropped", reply.pk)
        return
    _publish(reply)
    publisher.flush()
    if status != MessageStatus.FAILED:
        usage_record(
            user=reply.conversation.owner,
            name=UsageEventName.REPLY_FINISHED,
            model=reply.model,
            provider=reply.provider,
            duration_ms=reply.duration_ms,
        )


def reply_stop(*, conversation: Conversation, message_id: int | None = None) -> list[int]:
    """Stop the active replies of a conversation (or the one named); returns their ids."""
    active = conversation.messages.filter(role=Role.ASSISTANT, status__in=ACTIVE_STATUSES)
    if message_id is not None:
        active = active.filter(pk=message_id)
    replies = list(active)
    if not replies:
        return []
    # In the database first: the worker's heartbeat reads it there while Redis is down.
    now = timezone.now()
    Message.objects.filter(pk__in=[reply.pk for reply in replies]).update(stop_requested_at=now)
    for reply in replies:
        # Not started yet: stop it here. Started: the worker sees the flag between tokens.
        if Message.objects.filter(pk=reply.pk, status=MessageStatus.QUEUED).update(
            status=MessageStatus.STOPPED, finished_at=now
        ):
            reply.refresh_from_db()
            _publish(reply)
        else:
            live.stop_request(reply.pk)  # False while Redis is down (it has logged why)
    return [reply.pk for reply in replies]


def replies_fail_stale(*, conversation: Conversation | None = None, everything: bool = False) -> int:
    """Mark replies whose worker is gone as failed, keeping their saved text.

    ``everything`` is for start-up of the embedded server: its replies ran in the
    process that just ended, so none of them can still be alive.
    """
    now = timezone.now()
    active = Message.objects.filter(status__in=ACTIVE_STATUSES)
    if conversation is not None:
        active = active.filter(conversation=conversation)
    if not everything:
        active = active.filter(
            Q(
                status=MessageStatus.STREAMING,
                heartbeat_at__lt=now - timedelta(seconds=settings.CHAT_STALE_AFTER_S),
            )
            | Q(
                status=MessageStatus.QUEUED,
                created_at__lt=now - timedelta(seconds=settings.CHAT_QUEUED_TIMEOUT_S),
            )
        )
    failed = 0
    for reply in active.select_related("conversation"):
        reason = (
            "No worker picked up this reply. Try again."
            if reply.status == MessageStatus.QUEUED
            else "The worker stopped while writing this reply. Try again."
        )
        if Message.objects.filter(pk=reply.pk, status=reply.status, heartbeat_at=reply.heartbeat_at).update(
            status=MessageStatus.FAILED, error=reason, finished_at=now
        ):
            reply.status, reply.error = MessageStatus.FAILED, reason
            _publish(reply)
            failed += 1
    return failed


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with its messages and the files given in it."""
    reply_stop(conversation=conversation)
    with transaction.atomic():
        files_delete_after_commit(upload.file for upload in conversation.uploads.only("file"))
        conversation.delete()


def cloud_provider_save(*, provider: CloudProvider, api_key: str | None) -> CloudProvider:
    """Save a provider; a new key replaces the stored one, an empty one keeps it."""
    if not provider.base_url:
        provider.base_url = PRESET_BASE_URLS.get(provider.kind, "")
    if api_key:
        provider.api_key_encrypted = secret_encrypt(api_key)
        provider.api_key_hint = secret_hint(api_key)
    provider.save()
    return provider


def cloud_models_discover(*, provider: CloudProvider) -> int:
    """Record the models the provider offers; new ones start disabled. Returns how many are new."""
    names = provider_models_list(provider)
    known = set(provider.models.values_list("name", flat=True))
    CloudModel.objects.bulk_create(
        [CloudModel(provider=provider, name=name) for name in names if name not in known]
    )
    return len(set(names) - known)


def conversations_clear(*, user: User, local: bool) -> int:
    """Delete all of a person's conversations with local models (or with cloud ones)."""
    conversations = Conversation.objects.filter(owner=user)
    conversations = (
        conversations.filter(provider=Provider.LOCAL)
        if local
        else conversations.exclude(provider=Provider.LOCAL)
    )
    for conversation in conversations.filter(messages__status__in=ACTIVE_STATUSES).distinct():
        reply_stop(conversation=conversation)
    with transaction.atomic():
        files_delete_after_commit(
            upload.file for upload in Upload.objects.filter(conversation__in=conversations).only("file")
        )
        return conversations.delete()[1].get(Conversation._meta.label, 0)


def _upload_name(name: str | None) -> str:
    """The name as the person knows it, without folders or control characters."""
    cleaned = "".join(c for c in PurePath((name or "").replace("\\", "/")).name if c.isprintable())
    return cleaned[-255:] or "file"


def upload_save(*, owner: User, conversation: Conversation | None, file: UploadedFile) -> Upload:
    """Keep a file a person gives the instance, once its size and real type are checked.
    Refused files raise Refusal and leave nothing behind."""
    _check_not_restricted(owner)
    if conversation is not None and conversation.owner_id != owner.pk:
        raise Refusal("not_found", "No such conversation of yours.")
    name = _upload_name(file.name)
    if not file.size:
        raise Refusal("upload_empty", f"“{name}” is empty.")
    if file.size > settings.UPLOAD_MAX_BYTES:
        raise Refusal(
            "upload_too_large",
            f"“{name}” is {filesizeformat(file.size)}; "
            f"files up to {filesizeformat(settings.UPLOAD_MAX_BYTES)} can be uploaded.",
        )
    upload = Upload(
        owner=owner,
        conversation=conversation,
        original_name=name,
        content_type=upload_kind(file),
        size=file.size,
    )
    upload.file.save(name, file, save=False)  # under a random name (chat.models.upload_path)
    try:
        upload.save()
    except BaseException:
        upload.file.delete(save=False)
        raise
    return upload


@transaction.atomic
def upload_delete(*, upload: Upload) -> None:
    files_delete_after_commit([upload.file])
    upload.delete()

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from localai_site.tasks import task_enqueue

from . import live
from .errors import ChatError
from .events import message_event
from .models import ACTIVE_STATUSES, Conversation, Message, MessageStatus, Role
from .providers import ChatTurn, GenerationParams, ModelChoice, ProviderError, model_resolve, provider_for
from .realtime import publisher
from .streaming import ReplyWriter

logger = logging.getLogger(__name__)

TITLE_CHARS = 60


def _model_choose(model_id: str | None) -> ModelChoice:
    choice = model_resolve(model_id)
    if choice is None:
        if model_id:
            raise ChatError("unknown_model", f"The model {model_id!r} is not available on this instance.")
        raise ChatError("no_model", "No model is installed yet; an admin can add one in the model hub.")
    return choice


def _content_check(content: object) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ChatError("empty", "Write a message first.")
    size = len(content.encode("utf-8"))
    if size > settings.CHAT_MAX_MESSAGE_BYTES:
        raise ChatError(
            "too_long",
            f"The message is {size // 1024} KB; the limit is {settings.CHAT_MAX_MESSAGE_BYTES // 1024} KB.",
        )
    return content.strip()


def _publish(message: Message) -> None:
    publisher.publish(message.conversation.group_name, message_event(message))


def conversation_create(*, owner: User, model_id: str | None = None) -> Conversation:
    choice = _model_choose(model_id)
    return Conversation.objects.create(owner=owner, model=choice.model_id, provider=choice.provider)


@transaction.atomic
def message_send(
    *, conversation: Conversation, content: str, model_id: str | None = None
) -> tuple[Message, Message]:
    """Save the user's message and an empty reply, then start generating it after commit."""
    text = _content_check(content)
    choice = _model_choose(model_id or conversation.model)
    # Lock the conversation: two tabs sending at once must not start two replies.
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.messages.filter(status__in=ACTIVE_STATUSES).exists():
        raise ChatError("busy", "A reply is still being written. Wait for it or press Stop.")

    user_message = Message.objects.create(
        conversation=conversation,
        role=Role.USER,
        content=text,
        model=choice.model_id,
        provider=choice.provider,
    )
    reply = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        status=MessageStatus.QUEUED,
        model=choice.model_id,
        provider=choice.provider,
    )
    conversation.model = choice.model_id
    conversation.provider = choice.provider
    if not conversation.title:
        conversation.title = _title_from(text)
    conversation.save(update_fields=["model", "provider", "title", "updated_at"])

    def after_commit() -> None:
        _publish(user_message)
        _publish(reply)
        from .tasks import generate_reply

        task_enqueue(generate_reply, reply.pk, queue=choice.queue)

    transaction.on_commit(after_commit)
    return user_message, reply


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


def reply_generate(*, message_id: int) -> None:
    """Write the reply ``message_id`` with its model, streaming it to every open socket."""
    started = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED).update(
        status=MessageStatus.STREAMING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if not started:
        return  # stopped before a worker got to it, or already taken
    reply = Message.objects.select_related("conversation").get(pk=message_id)
    _publish(reply)
    writer = ReplyWriter(message=reply, group=reply.conversation.group_name)
    usage = None
    try:
        provider = provider_for(_model_choose(reply.model))
        params = GenerationParams(max_tokens=settings.CHAT_MAX_TOKENS, temperature=settings.CHAT_TEMPERATURE)
        for delta in provider.stream(_history(reply), params, writer.cancel):
            if delta.text:
                writer.add(delta.text)
            if delta.completion_tokens is not None:
                usage = delta
        writer.flush()
        status = MessageStatus.STOPPED if writer.cancel.is_set() else MessageStatus.DONE
        error = ""
    except (ProviderError, ChatError) as exc:
        status, error = MessageStatus.FAILED, str(exc)
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
    reply.save()
    live.live_state_clear(reply.pk)
    _publish(reply)
    publisher.flush()


def reply_stop(*, conversation: Conversation, message_id: int | None = None) -> list[int]:
    """Stop the active replies of a conversation (or the one named); returns their ids."""
    active = conversation.messages.filter(role=Role.ASSISTANT, status__in=ACTIVE_STATUSES)
    if message_id is not None:
        active = active.filter(pk=message_id)
    stopped = []
    for reply in active:
        # Not started yet: stop it here. Started: the worker sees the flag between tokens.
        if Message.objects.filter(pk=reply.pk, status=MessageStatus.QUEUED).update(
            status=MessageStatus.STOPPED, finished_at=timezone.now()
        ):
            reply.refresh_from_db()
            _publish(reply)
        else:
            live.stop_request(reply.pk)
        stopped.append(reply.pk)
    return stopped


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
    reply_stop(conversation=conversation)
    conversation.delete()

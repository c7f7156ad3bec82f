"""Starting and ending replies: a person's message and its reply, a reply written again, an
edited message, Stop, and replies whose worker is gone. Writing a reply is ``generation``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.analytics import usage_record
from accounts.models import UsageEventName, User
from billing.models import UsageKind
from billing.services import quota_spend
from chat import live
from chat.events import message_event, removed_event
from chat.models import (
    ACTIVE_STATUSES,
    IMAGE_TYPES,
    Conversation,
    Message,
    MessageStatus,
    Role,
    Upload,
)
from chat.providers import ModelChoice
from localai_site.core.files import files_delete_after_commit
from localai_site.core.realtime import publisher
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import TaskQueueUnavailable, task_enqueue

from .choice import images_check, model_choose, privacy_line_check, restriction_check

logger = logging.getLogger(__name__)

TITLE_CHARS = 60
QUEUE_UNREACHABLE = (
    "The task queue (Redis) cannot be reached, so no worker could take this reply. Try again in a moment."
)


def message_publish(message: Message) -> None:
    """Show ``message`` as it is now on every socket open on its conversation."""
    publisher.publish(message.conversation.group_name, message_event(message))


def message_content_check(content: object) -> str:
    """A message's text, stripped; Refusal when it is empty or over the size limit."""
    if not isinstance(content, str) or not content.strip():
        raise Refusal("empty", "Write a message first.")
    size = len(content.encode("utf-8"))
    if size > settings.CHAT_MAX_MESSAGE_BYTES:
        raise Refusal(
            "too_long",
            f"The message is {size // 1024} KB; the limit is {settings.CHAT_MAX_MESSAGE_BYTES // 1024} KB.",
        )
    return content.strip()


def conversation_title_from(text: str) -> str:
    """A conversation's title: the first words of its first message, on one line."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def conversation_lock_idle(conversation: Conversation) -> Conversation:
    """Lock the conversation row and its owner's: two tabs acting at once, in one
    conversation or in several, must not both pass the checks below."""
    locked = (
        Conversation.objects.select_for_update(of=("self", "owner"))
        .select_related("owner")
        .get(pk=conversation.pk)
    )
    restriction_check(user=locked.owner)
    # The owner's queued and streaming replies, here and in all their conversations: one query.
    active = Message.objects.filter(conversation__owner=locked.owner, status__in=ACTIVE_STATUSES).aggregate(
        here=Count("pk", filter=Q(conversation=locked)), everywhere=Count("pk")
    )
    if active["here"]:
        raise Refusal("busy", "A reply is still being written. Wait for it or press Stop.")
    _active_replies_check(active["everywhere"])
    return locked


def _active_replies_check(active: int) -> None:
    """One person's queued and streaming replies, across their conversations, are capped:
    otherwise one person fills the single local model's queue and others' replies time out."""
    limit = settings.CHAT_MAX_ACTIVE_REPLIES
    if active >= limit:
        raise Refusal(
            "too_many_replies",
            f"You have as many replies being written as one person may ({limit}). "
            "Wait for one to finish, or press Stop in its conversation.",
        )


def reply_start(
    conversation: Conversation, choice: ModelChoice, *announce: Message, sampling: dict | None = None
) -> Message:
    """Spend a message of the owner's plan and create the empty reply; after commit, show it
    and hand it to a worker. In the caller's transaction: a refusal undoes the message too."""
    quota_spend(
        user=conversation.owner, kind=UsageKind.CLOUD_MESSAGE, model_id=choice.model_id, local=choice.is_local
    )
    reply = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        status=MessageStatus.QUEUED,
        model=choice.model_id,
        provider=choice.provider,
        sampling=sampling or {},
    )

    def after_commit() -> None:
        for message in (*announce, reply):
            message_publish(message)
        try:
            task_enqueue("chat.generate_reply", reply.pk, queue=choice.queue())
        except TaskQueueUnavailable as exc:
            # No worker will ever see it: say so now rather than leave it queued. The caller
            # reads the failure from ``reply`` (the socket tells its browser directly: the
            # live events go through Redis too).
            logger.warning("Reply %s could not be queued: %s", reply.pk, exc)
            now = timezone.now()
            if Message.objects.transition(
                reply.pk,
                to=MessageStatus.FAILED,
                source=MessageStatus.QUEUED,
                error=QUEUE_UNREACHABLE,
                finished_at=now,
            ):
                reply.status, reply.error, reply.finished_at = MessageStatus.FAILED, QUEUE_UNREACHABLE, now
                message_publish(reply)

    transaction.on_commit(after_commit)
    return reply


def _attachments_take(
    *, owner: User, conversation: Conversation, upload_ids: Sequence[uuid.UUID]
) -> list[Upload]:
    """The files a message is sent with: the sender's, stored and sent with nothing yet."""
    wanted = set(upload_ids)
    if not wanted:
        return []
    if len(wanted) > Upload.PER_MESSAGE:
        raise Refusal("too_many_files", f"A message can carry at most {Upload.PER_MESSAGE} files.")
    uploads = list(
        Upload.objects.select_for_update()
        .filter(pk__in=wanted, owner=owner, message__isnull=True)
        .filter(Q(conversation__isnull=True) | Q(conversation=conversation))
    )
    if len(uploads) != len(wanted):
        gone = "A file you attached is not there any more (deleted, or sent already): attach it again."
        raise Refusal("upload_gone", gone)
    return uploads


@transaction.atomic
def message_send(
    *,
    conversation: Conversation,
    content: str,
    model_id: str | None = None,
    upload_ids: Sequence[uuid.UUID] = (),
) -> tuple[Message, Message]:
    """Save the user's message with its files and an empty reply, then start generating it
    after commit."""
    text = message_content_check(content)
    # Fresh from the database: the socket's copy may be old.
    conversation = conversation_lock_idle(conversation)
    owner = conversation.owner
    choice = model_choose(user=owner, model_id=model_id or conversation.model)
    privacy_line_check(conversation=conversation, choice=choice)
    attachments = _attachments_take(owner=owner, conversation=conversation, upload_ids=upload_ids)
    # The images sent before go to this model too, with the history.
    sent_images = conversation.uploads.filter(message__isnull=False, content_type__in=IMAGE_TYPES)
    if any(upload.is_image for upload in attachments) or sent_images.exists():
        images_check(user=owner, conversation=conversation, choice=choice)

    user_message = Message.objects.create(
        conversation=conversation,
        role=Role.USER,
        content=text,
        model=choice.model_id,
        provider=choice.provider,
    )
    if attachments:
        # Who receives them is recorded as each reply's prompt is built (``uploads_delivered``).
        Upload.objects.filter(pk__in=[upload.pk for upload in attachments]).update(
            message=user_message, conversation=conversation
        )
    conversation.model = choice.model_id
    conversation.provider = choice.provider
    if not conversation.title:
        conversation.title = conversation_title_from(text)
    conversation.save(update_fields=["model", "provider", "title", "updated_at"])
    if owner.default_model != choice.model_id:
        owner.default_model = choice.model_id
        owner.save(update_fields=["default_model"])
    usage_record(
        user=owner,
        name=UsageEventName.MESSAGE_SENT,
        model=choice.model_id,
        provider=choice.provider,
        user_locked=True,  # by conversation_lock_idle
    )
    return user_message, reply_start(conversation, choice, user_message)


def last_reply_remove(*, conversation: Conversation, message_id: int) -> None:
    """Delete the last reply, ``message_id``, to write it again (in the caller's transaction,
    with the conversation locked)."""
    last = conversation.messages.order_by("-id").first()
    if last is None or last.pk != message_id or last.role != Role.ASSISTANT:
        raise Refusal("not_last_reply", "Only the last reply can be written again.")
    last.delete()
    publisher.publish(conversation.group_name, removed_event([message_id]))


@transaction.atomic
def reply_regenerate(*, conversation: Conversation, message_id: int) -> Message:
    """Replace the last reply with a new one written from the same history."""
    conversation = conversation_lock_idle(conversation)
    choice = model_choose(user=conversation.owner, model_id=conversation.model)
    last_reply_remove(conversation=conversation, message_id=message_id)
    return reply_start(conversation, choice)


def message_rewrite(*, conversation: Conversation, message_id: int, text: str) -> Message:
    """Give the person's message ``message_id`` the checked ``text`` and remove what followed
    it, to answer it again (in the caller's transaction, with the conversation locked)."""
    message = conversation.messages.filter(pk=message_id, role=Role.USER).first()
    if message is None:
        raise Refusal("not_found", "There is no message of yours with that id here.")
    later = list(conversation.messages.filter(id__gt=message.pk).values_list("id", flat=True))
    files_delete_after_commit(upload.file for upload in Upload.objects.filter(message_id__in=later))
    conversation.messages.filter(id__in=later).delete()  # their files' rows with them
    message.content = text
    message.save(update_fields=["content"])
    publisher.publish(conversation.group_name, removed_event(later))
    return message


@transaction.atomic
def message_edit(*, conversation: Conversation, message_id: int, content: str) -> Message:
    """Change a sent message and answer it again; what followed it is replaced."""
    text = message_content_check(content)
    conversation = conversation_lock_idle(conversation)
    choice = model_choose(user=conversation.owner, model_id=conversation.model)
    message = message_rewrite(conversation=conversation, message_id=message_id, text=text)
    return reply_start(conversation, choice, message)


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
        if Message.objects.transition(
            reply.pk, to=MessageStatus.STOPPED, source=MessageStatus.QUEUED, finished_at=now
        ):
            reply.status, reply.finished_at, reply.stop_requested_at = MessageStatus.STOPPED, now, now
            message_publish(reply)
        else:
            live.stop_request(reply.pk)  # False while Redis is down (it has logged why)
    return [reply.pk for reply in replies]


def _stale_reason(reply: Message) -> str:
    if reply.status == MessageStatus.QUEUED:
        return "No worker picked up this reply. Try again."
    return "The worker stopped while writing this reply. Try again."


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
    # A heartbeat written since it was read means its worker is alive after all.
    return active.select_related("conversation").fail_stale(
        to=MessageStatus.FAILED,
        reason=_stale_reason,
        guard=["heartbeat_at"],
        announce=message_publish,
        finished_at=now,
    )

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from accounts.models import User

from . import live
from .events import message_payload
from .models import ACTIVE_STATUSES, Conversation, Message


def conversation_get_owned(*, user: User, conversation_id: uuid.UUID | str) -> Conversation | None:
    """The conversation, only if ``user`` owns it (anyone else gets None, as for a missing one)."""
    try:
        conversation_uuid = uuid.UUID(str(conversation_id))
    except ValueError:
        return None
    return Conversation.objects.filter(pk=conversation_uuid, owner=user).first()


def conversations_for(*, user: User) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).only("id", "title", "updated_at", "model")


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.exclude(role="system"))


def messages_state(*, conversation: Conversation, message_ids: list[int]) -> list[dict]:
    """Current state of the named messages and of every active one, newest text included.

    A reply being written is saved to the database now and then; the shared live text
    is fresher, so it wins while the reply is active.
    """
    messages = list(
        conversation.messages.filter(pk__in=message_ids)
        | conversation.messages.filter(status__in=ACTIVE_STATUSES)
    )
    texts = live.live_texts_get([m.pk for m in messages if m.is_active])
    payloads = []
    for message in messages:
        text = texts.get(message.pk)
        use_live = text is not None and len(text) > len(message.content)
        payloads.append(message_payload(message, content=text if use_live else None))
    return payloads

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from accounts.models import User

from . import live
from .display import recipient_label
from .events import message_payload
from .models import ACTIVE_STATUSES, Conversation, Message, Persona, Provider, Role, Upload

MESSAGES_PAGE = 50


def conversation_get_owned(*, user: User, conversation_id: uuid.UUID | str) -> Conversation | None:
    """The conversation, only if ``user`` owns it (anyone else gets None, as for a missing one)."""
    try:
        conversation_uuid = uuid.UUID(str(conversation_id))
    except ValueError:
        return None
    return Conversation.objects.filter(pk=conversation_uuid, owner=user).select_related("persona").first()


def uploads_for(*, user: User) -> QuerySet[Upload]:
    return (
        Upload.objects.filter(owner=user)
        .select_related("conversation")
        .only(
            "id", "original_name", "size", "created_at", "provider", "conversation__id", "conversation__title"
        )
    )


def upload_get_owned(*, user: User, upload_id: uuid.UUID) -> Upload | None:
    """The file, only if ``user`` owns it (anyone else gets None, as for a missing one)."""
    return Upload.objects.filter(pk=upload_id, owner=user).first()


def conversations_for(*, user: User, search: str = "") -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(owner=user)
    search = search.strip()
    if search:
        matching_text = Message.objects.filter(conversation__owner=user, content__icontains=search)
        conversations = conversations.filter(
            Q(title__icontains=search) | Q(pk__in=matching_text.values("conversation_id"))
        )
    return conversations.only("id", "title", "updated_at", "model", "provider", "pinned")


@dataclass(frozen=True)
class ConversationGroup:
    label: str
    conversations: list[Conversation]


def conversations_grouped(conversations: list[Conversation]) -> list[ConversationGroup]:
    """Pinned first, then by age: today, yesterday, this week, this month, older."""
    today = timezone.localdate()
    bounds = [
        ("Today", today),
        ("Yesterday", today - timedelta(days=1)),
        ("Previous 7 days", today - timedelta(days=7)),
        ("Previous 30 days", today - timedelta(days=30)),
    ]
    groups: dict[str, list[Conversation]] = {}
    for conversation in conversations:
        if conversation.pinned:
            label = "Pinned"
        else:
            day = timezone.localdate(conversation.updated_at)
            label = next((name for name, start in bounds if day >= start), "Older")
        groups.setdefault(label, []).append(conversation)
    order = ["Pinned", *(name for name, _ in bounds), "Older"]
    return [ConversationGroup(label, groups[label]) for label in order if label in groups]


def _with_live_text(messages: list[Message]) -> list[Message]:
    """A reply being written is saved to the database now and then; the shared live text
    is fresher, so it wins while the reply is active."""
    texts = live.live_texts_get([m.pk for m in messages if m.is_active])
    for message in messages:
        text = texts.get(message.pk)
        if text is not None and len(text) > len(message.content):
            message.content = text
    return messages


def conversation_messages_page(
    *, conversation: Conversation, before_id: int | None = None, limit: int = MESSAGES_PAGE
) -> tuple[list[Message], bool]:
    """The newest ``limit`` messages (before ``before_id``), oldest first, and whether older exist."""
    messages = conversation.messages.exclude(role=Role.SYSTEM).prefetch_related("attachments")
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    page = list(messages.order_by("-id")[: limit + 1])
    return _with_live_text(page[:limit][::-1]), len(page) > limit


def messages_state(*, conversation: Conversation, message_ids: list[int]) -> list[dict]:
    """Current state of the named messages and of every active one, newest text included."""
    messages = list(
        conversation.messages.filter(pk__in=message_ids)
        | conversation.messages.filter(status__in=ACTIVE_STATUSES)
    )
    return [message_payload(message) for message in _with_live_text(messages)]


def personas_visible(*, user: User) -> QuerySet[Persona]:
    return Persona.objects.filter(Q(owner=user) | Q(is_shared=True) | Q(is_builtin=True))


def persona_get_visible(*, user: User, persona_id: int) -> Persona | None:
    return personas_visible(user=user).filter(pk=persona_id).first()


def persona_get_owned(*, user: User, persona_id: int) -> Persona | None:
    """Only the person who made a persona may change it, until an admin shares it: then it is
    the admin's, since it writes the system prompt of other people's conversations."""
    return Persona.objects.filter(pk=persona_id, owner=user, is_shared=False).first()


def conversation_counts(*, user: User) -> dict[str, int]:
    counts = Conversation.objects.filter(owner=user).aggregate(
        local=Count("id", filter=Q(provider=Provider.LOCAL)), total=Count("id")
    )
    return {"local": counts["local"], "cloud": counts["total"] - counts["local"]}


def recipients_of(*, user: User) -> list[dict]:
    """Who received this person's words: this instance, and each cloud provider, with when."""
    received = (
        Message.objects.filter(conversation__owner=user)
        .values("provider")
        .annotate(messages=Count("id"), first=Min("created_at"), last=Max("created_at"))
        .order_by("provider")
    )
    return [
        {
            "recipient": recipient_label(row["provider"]),
            "messages": row["messages"],
            "first": row["first"].isoformat(),
            "last": row["last"].isoformat(),
        }
        for row in received
    ]


def replies_active_count(*, model_id: str) -> int:
    """Replies queued or being written with the model ``model_id``."""
    return Message.objects.filter(model=model_id, status__in=ACTIVE_STATUSES).count()

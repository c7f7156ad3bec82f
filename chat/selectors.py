from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import User

from . import live
from .display import recipient_label
from .events import message_payload
from .models import (
    ACTIVE_STATUSES,
    IMAGE_TYPES,
    CloudTranscription,
    Conversation,
    GeneratedImage,
    ImageGeneration,
    Message,
    MessageStatus,
    Persona,
    Provider,
    Role,
    Upload,
)

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
        .prefetch_related("deliveries")
        .only("id", "original_name", "size", "created_at", "conversation__id", "conversation__title")
    )


def uploads_waiting(*, user: User, upload_ids: list[str], conversation: Conversation | None) -> list[Upload]:
    """Of ``upload_ids``, the images of ``user`` that wait to be sent in ``conversation``
    (or in a new chat)."""
    wanted = []
    for upload_id in upload_ids[: Upload.PER_MESSAGE]:
        try:
            wanted.append(uuid.UUID(upload_id))
        except ValueError:
            continue
    if not wanted:
        return []
    place = Q(conversation__isnull=True)
    if conversation is not None:
        place |= Q(conversation=conversation)
    waiting = Upload.objects.filter(place, pk__in=wanted, owner=user, message__isnull=True)
    return [upload for upload in waiting if upload.is_image]


def uploaded_images_for(*, user: User, limit: int = 24) -> list[Upload]:
    """The newest images ``user`` uploaded, to pick one to edit in the gallery."""
    return list(Upload.objects.filter(owner=user, content_type__in=IMAGE_TYPES)[:limit])


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
    """Who received this person's words: this instance, and each cloud provider, with when;
    and how many voice recordings each provider transcribed."""
    received: dict[str, dict] = {}
    for counted, rows in (
        ("messages", Message.objects.filter(conversation__owner=user)),
        ("recordings", CloudTranscription.objects.filter(owner=user)),
    ):
        counts = rows.values("provider").annotate(
            n=Count("id"), first=Min("created_at"), last=Max("created_at")
        )
        for row in counts:
            entry = received.setdefault(
                row["provider"], {"messages": 0, "recordings": 0, "first": row["first"], "last": row["last"]}
            )
            entry[counted] = row["n"]
            entry["first"], entry["last"] = min(entry["first"], row["first"]), max(entry["last"], row["last"])
    return [
        {
            "recipient": recipient_label(provider),
            **entry,
            "first": entry["first"].isoformat(),
            "last": entry["last"].isoformat(),
        }
        for provider, entry in sorted(received.items())
    ]


def replies_active_count(*, model_id: str) -> int:
    """Replies queued or being written with the model ``model_id``."""
    return Message.objects.filter(model=model_id, status__in=ACTIVE_STATUSES).count()


def image_generations_for(*, user: User) -> QuerySet[ImageGeneration]:
    """The gallery: newest first, each with its images and what it was made from."""
    return (
        ImageGeneration.objects.filter(owner=user)
        .select_related("source", "source_upload")
        .prefetch_related("images", "images__edits")
    )


def image_generation_get_owned(*, user: User, generation_id: uuid.UUID) -> ImageGeneration | None:
    return ImageGeneration.objects.filter(pk=generation_id, owner=user).first()


def generated_image_get_owned(*, user: User, image_id: uuid.UUID) -> GeneratedImage | None:
    """The image, only if ``user`` owns it (anyone else gets None, as for a missing one)."""
    return GeneratedImage.objects.filter(pk=image_id, owner=user).select_related("generation").first()


def generated_images_for(*, user: User) -> QuerySet[GeneratedImage]:
    return GeneratedImage.objects.filter(owner=user).select_related("generation")


def image_recipients_of(*, user: User) -> list[dict]:
    """Who received this person's image prompts (and the images they edited), with when."""
    received = (
        ImageGeneration.objects.filter(owner=user)
        .values("provider")
        .annotate(prompts=Count("id"), images_sent=Count("id", filter=Q(sent_image=True)))
        .annotate(first=Min("created_at"), last=Max("created_at"))
        .order_by("provider")
    )
    return [
        {
            "recipient": recipient_label(row["provider"]),
            "prompts": row["prompts"],
            "images_sent": row["images_sent"],
            "first": row["first"].isoformat(),
            "last": row["last"].isoformat(),
        }
        for row in received
    ]


# --- For the operator (/metrics, Admin → Operations): counts of replies, nobody named --------


def provider_kind(provider: str) -> str:
    """``local`` for this instance, ``cloud`` for any provider's slug."""
    return "local" if provider == Provider.LOCAL else "cloud"


def replies_in_progress() -> dict[tuple[str, str], int]:
    """Replies queued or being written, by (provider kind, status); every pair is present."""
    counts = {(kind, str(status)): 0 for kind in ("local", "cloud") for status in ACTIVE_STATUSES}
    rows = (
        Message.objects.filter(status__in=ACTIVE_STATUSES)  # the partial index message_status
        .values_list("provider", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for provider, status, n in rows:
        counts[provider_kind(provider), status] += n
    return counts


def _finished_since(since) -> QuerySet[Message]:
    return Message.objects.filter(role=Role.ASSISTANT, finished_at__gte=since).order_by()


def replies_finished_since(*, since) -> dict[tuple[str, str], int]:
    """Replies that ended after ``since``, by (provider kind, status: done, stopped, failed);
    every pair is present."""
    ended = (MessageStatus.DONE, MessageStatus.STOPPED, MessageStatus.FAILED)
    counts = {(kind, str(status)): 0 for kind in ("local", "cloud") for status in ended}
    for provider, status, n in (
        _finished_since(since).values_list("provider", "status").annotate(n=Count("id"))
    ):
        key = (provider_kind(provider), status)
        counts[key] = counts.get(key, 0) + n
    return counts


@dataclass(frozen=True)
class ModelSpeed:
    model: str
    tokens_per_second: float | None  # tokens written after the first, as Message.tokens_per_second
    ttft_ms: list[int]  # of each reply, smallest first


def model_speeds_since(*, since) -> list[ModelSpeed]:
    """How fast each model answered in the replies that ended after ``since``."""
    tokens: dict[str, int] = {}
    decode_ms: dict[str, int] = {}
    ttfts: dict[str, list[int]] = {}
    rows = _finished_since(since).filter(ttft_ms__isnull=False).exclude(status=MessageStatus.FAILED)
    for model, ttft, completion, duration in rows.values_list(
        "model", "ttft_ms", "completion_tokens", "duration_ms"
    ):
        ttfts.setdefault(model, []).append(ttft)
        if completion and duration and duration > ttft:
            tokens[model] = tokens.get(model, 0) + completion
            decode_ms[model] = decode_ms.get(model, 0) + duration - ttft
    return [
        ModelSpeed(
            model=model,
            tokens_per_second=round(tokens[model] * 1000 / decode_ms[model], 2)
            if decode_ms.get(model)
            else None,
            ttft_ms=sorted(values),
        )
        for model, values in sorted(ttfts.items())
    ]


@dataclass(frozen=True)
class RepliesDay:
    day: date
    local: int
    cloud: int
    failed: int


def replies_per_day(*, days: int) -> list[RepliesDay]:
    """Replies that ended on each of the last ``days`` days (in ``TIME_ZONE``), oldest first:
    finished by local or by cloud models, and failed (of either)."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, time.min))
    local: dict[date, int] = {}
    cloud: dict[date, int] = {}
    failed: dict[date, int] = {}
    rows = (
        _finished_since(since)
        .annotate(day=TruncDate("finished_at", tzinfo=timezone.get_current_timezone()))
        .values_list("day", "provider", "status")
        .annotate(n=Count("id"))
    )
    for day, provider, status, n in rows:
        counts = failed if status == MessageStatus.FAILED else local if provider == Provider.LOCAL else cloud
        counts[day] = counts.get(day, 0) + n
    return [
        RepliesDay(day=day, local=local.get(day, 0), cloud=cloud.get(day, 0), failed=failed.get(day, 0))
        for day in (first + timedelta(days=offset) for offset in range(days))
    ]

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Max, Min
from django.utils import timezone

from .models import ExportArchive, InstanceSettings, Invitation


def instance_settings_get() -> InstanceSettings:
    found = InstanceSettings.objects.filter(pk=1).first()
    if found is None:
        found, _ = InstanceSettings.objects.get_or_create(
            pk=1, defaults={"signup_mode": settings.SIGNUP_MODE_DEFAULT}
        )
    return found


def invitation_find_open(*, token: str, email: str | None = None) -> Invitation | None:
    invitation = Invitation.objects.filter(token=token, accepted_at__isnull=True).first()
    if invitation is None:
        return None
    if email is not None and invitation.email and invitation.email.lower() != email.lower():
        return None
    return invitation


def export_latest(*, user) -> ExportArchive | None:
    return ExportArchive.objects.filter(user=user, expires_at__gt=timezone.now()).first()


def export_get_owned(*, user, export_id: int) -> ExportArchive | None:
    return ExportArchive.objects.filter(pk=export_id, user=user).first()


def export_downloadable(*, user, token: str) -> ExportArchive | None:
    archive = ExportArchive.objects.filter(token=token, user=user).first()
    return archive if archive is not None and archive.is_downloadable else None


def conversation_counts(*, user) -> dict[str, int]:
    from chat.models import Conversation, Provider

    conversations = Conversation.objects.filter(owner=user)
    local = conversations.filter(provider=Provider.LOCAL).count()
    return {"local": local, "cloud": conversations.count() - local}


def recipients_of(*, user) -> list[dict]:
    """Who received this person's words: this instance, and each cloud provider, with when."""
    from chat.models import Message, Provider

    received = (
        Message.objects.filter(conversation__owner=user)
        .values("provider")
        .annotate(messages=Count("id"), first=Min("created_at"), last=Max("created_at"))
        .order_by("provider")
    )
    return [
        {
            "recipient": "this instance" if row["provider"] == Provider.LOCAL else row["provider"],
            "messages": row["messages"],
            "first": row["first"].isoformat(),
            "last": row["last"].isoformat(),
        }
        for row in received
    ]

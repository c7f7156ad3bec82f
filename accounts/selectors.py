from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Min
from django.utils import timezone

from .models import (
    Consent,
    ConsentPurpose,
    CrashReport,
    ExportArchive,
    InstanceSettings,
    Invitation,
    PolicyVersion,
)


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


def policy_current() -> PolicyVersion | None:
    """The version in force; None while the instance shows its built-in policy."""
    return PolicyVersion.objects.order_by("-version").first()


def policy_label(policy: PolicyVersion | None) -> str:
    return policy.label if policy else "default"


def policy_significant_version() -> int:
    """The newest version everyone must have reviewed (one indexed row, read on each page:
    a cache would go stale in the other processes when a version is published)."""
    newest = PolicyVersion.objects.filter(significant=True).order_by("-version").values_list("version")[:1]
    return newest[0][0] if newest else 0


def consents_of(*, user) -> list[Consent]:
    return list(Consent.objects.filter(user=user))


def consent_current(*, user, purpose: ConsentPurpose) -> Consent | None:
    return Consent.objects.filter(user=user, purpose=purpose).first()


def crash_reports_recent(*, days: int) -> int:
    return CrashReport.objects.filter(created_at__gte=timezone.now() - timedelta(days=days)).count()

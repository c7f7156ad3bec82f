from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import (
    Consent,
    CrashReport,
    CrashSource,
    DataSubjectRequest,
    ExportArchive,
    InstanceSettings,
    Invitation,
    PolicyVersion,
    RequestStatus,
    User,
)


def instance_settings_get() -> InstanceSettings:
    return InstanceSettings.load()


def admin_exists() -> bool:
    return User.objects.filter(is_superuser=True).exists()


def invitation_usable() -> QuerySet[Invitation]:
    """Invitations not used yet nor lapsed (``RETENTION_DAYS["unused_invitations"]``)."""
    lapse = timezone.now() - timedelta(days=settings.RETENTION_DAYS["unused_invitations"])
    return Invitation.objects.filter(accepted_at__isnull=True, created_at__gte=lapse)


def invitation_find_open(*, token: str, email: str | None = None) -> Invitation | None:
    invitation = invitation_usable().filter(token=token).first()
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


def crash_reports_recent(*, days: int) -> int:
    return CrashReport.objects.filter(last_seen_at__gte=timezone.now() - timedelta(days=days)).count()


def crash_report_totals() -> dict[str, tuple[int, int]]:
    """Stored crash reports by source: (reports, occurrences counted on them)."""
    rows = CrashReport.objects.values_list("source").annotate(n=Count("id"), seen=Sum("count")).order_by()
    totals = {str(source): (0, 0) for source in CrashSource}
    totals.update({source: (n, seen or 0) for source, n, seen in rows})
    return totals


def data_requests_open() -> QuerySet[DataSubjectRequest]:
    """Requests not answered yet, the nearest deadline first."""
    return (
        DataSubjectRequest.objects.exclude(status__in=[RequestStatus.COMPLETED, RequestStatus.REFUSED])
        .annotate(deadline_at=Coalesce("extended_until", "due_at"))
        .order_by("deadline_at")
    )

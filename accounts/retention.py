"""The retention table (``settings.RETENTION_DAYS``), enforced hourly and on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .analytics import usage_rollup
from .models import CrashReport, DataSubjectRequest, Invitation, RequestStatus
from .services import exports_purge

MAX_CRASH_REPORT_DAYS = 90


@dataclass(frozen=True, slots=True)
class RetentionRule:
    key: str  # in settings.RETENTION_DAYS
    kept: str  # what is kept, for the command's table and the README
    purge: Callable[[datetime], int]  # removes what is older than the cutoff; returns how many

    @property
    def days(self) -> int:
        return settings.RETENTION_DAYS[self.key]


def _crash_reports_purge(cutoff: datetime) -> int:
    return CrashReport.objects.filter(last_seen_at__lt=cutoff).delete()[0]


def _analytics_purge(cutoff: datetime) -> int:
    # Whole days only: a day's distinct-user count is right only if it is counted at once.
    return usage_rollup(before=timezone.localdate(cutoff) + timedelta(days=1))


def _exports_purge(cutoff: datetime) -> int:
    return exports_purge(created_before=cutoff)


def _data_requests_purge(cutoff: datetime) -> int:
    finished = DataSubjectRequest.objects.filter(
        status__in=[RequestStatus.COMPLETED, RequestStatus.REFUSED], received_at__lt=cutoff
    )
    return finished.delete()[0]


def _invitations_purge(cutoff: datetime) -> int:
    return Invitation.objects.filter(accepted_at__isnull=True, created_at__lt=cutoff).delete()[0]


RULES = [
    RetentionRule("crash_reports", "Crash reports", _crash_reports_purge),
    RetentionRule("export_archives", "Data downloads (ZIP archives)", _exports_purge),
    RetentionRule("analytics_events", "Raw analytics events (then only daily totals)", _analytics_purge),
    RetentionRule("finished_data_requests", "Records of answered data requests", _data_requests_purge),
    RetentionRule("unused_invitations", "Invitations nobody used (they stop working)", _invitations_purge),
]


def retention_rule_register(rule: RetentionRule) -> None:
    """A rule of an app above this one (billing's invoices), added when that app is ready."""
    if rule.key not in {known.key for known in RULES}:
        RULES.append(rule)


KEPT_UNTIL_DELETED = "Your account, conversations, personas and files: until you delete them or your account"


def retention_table() -> list[dict[str, object]]:
    return [{"record": rule.kept, "days": rule.days} for rule in RULES] + [
        {"record": KEPT_UNTIL_DELETED, "days": None}
    ]


def retention_enforce(*, now: datetime | None = None) -> dict[str, int]:
    """Delete everything kept past its period; returns how many records each rule removed."""
    now = now or timezone.now()
    return {rule.key: rule.purge(now - timedelta(days=rule.days)) for rule in RULES}

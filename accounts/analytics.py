"""First-party usage analytics: which features and models are used, never what was written.

Events are recorded only for people who agreed (and whose browser does not send Global
Privacy Control, which withdraws the agreement). Raw events are counted into daily
totals once their day is over and then deleted; the totals name nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from .models import ActiveUsersDaily, UsageDaily, UsageEvent, UsageEventName, User


def usage_record(
    *,
    user: User | None,
    name: UsageEventName,
    model: str = "",
    provider: str = "",
    duration_ms: int | None = None,
    user_locked: bool = False,
) -> None:
    """Record one event if this person currently agrees to analytics; otherwise nothing.
    ``user_locked``: ``user`` was read locked in the caller's transaction, so it is current."""
    if user is None or not user.pk:
        return
    # Read the agreement from the database, not from a copy held by a long-lived socket:
    # a withdrawal in another tab must stop recording at once.
    if user_locked:
        agrees = user.analytics_enabled and not user.processing_restricted
    else:
        agrees = User.objects.filter(pk=user.pk, analytics_enabled=True, processing_restricted=False).exists()
    if agrees:
        UsageEvent.objects.create(
            user_id=user.pk, name=name, model=model[:200], provider=provider[:60], duration_ms=duration_ms
        )


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@transaction.atomic
def usage_rollup(*, before: date) -> int:
    """Count the raw events of every day before ``before`` into daily totals, then delete
    them. Returns how many raw events were deleted."""
    raw = UsageEvent.objects.filter(created_at__lt=day_start(before)).annotate(day=TruncDate("created_at"))
    totals = raw.values("day", "name", "model", "provider").annotate(
        events=Count("id"), users=Count("user", distinct=True), duration=Sum("duration_ms")
    )
    for row in totals:
        daily, _ = UsageDaily.objects.get_or_create(
            day=row["day"], name=row["name"], model=row["model"], provider=row["provider"]
        )
        UsageDaily.objects.filter(pk=daily.pk).update(
            events=F("events") + row["events"],
            users=F("users") + row["users"],
            duration_ms_total=F("duration_ms_total") + (row["duration"] or 0),
        )
    for row in raw.values("day").annotate(users=Count("user", distinct=True)):
        ActiveUsersDaily.objects.update_or_create(day=row["day"], defaults={"users": row["users"]})
    deleted, _ = UsageEvent.objects.filter(created_at__lt=day_start(before)).delete()
    return deleted


# --- The admin dashboard ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayCounts:
    day: date
    local: int = 0
    cloud: int = 0
    users: int = 0


@dataclass(frozen=True, slots=True)
class UsageSummary:
    days: list[DayCounts]
    models: list[tuple[str, int]]  # model id, messages
    downloads: list[tuple[str, int]]  # model, downloads
    people_total: int
    people_agreeing: int

    @property
    def messages(self) -> int:
        return sum(day.local + day.cloud for day in self.days)

    @property
    def local_share(self) -> int:
        return round(100 * sum(day.local for day in self.days) / self.messages) if self.messages else 0


def usage_summary(*, days: int = 30) -> UsageSummary:
    """Daily totals plus today's raw events, so the dashboard is live without waiting a day."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows: dict[tuple, int] = {}
    users_per_day: dict[date, int] = {}
    for row in UsageDaily.objects.filter(day__gte=first).values("day", "name", "model", "provider", "events"):
        key = (row["day"], row["name"], row["model"], row["provider"])
        rows[key] = rows.get(key, 0) + row["events"]
    for row in ActiveUsersDaily.objects.filter(day__gte=first):
        users_per_day[row.day] = row.users
    live = UsageEvent.objects.filter(created_at__gte=day_start(first)).annotate(day=TruncDate("created_at"))
    for row in live.values("day", "name", "model", "provider").annotate(events=Count("id")):
        key = (row["day"], row["name"], row["model"], row["provider"])
        rows[key] = rows.get(key, 0) + row["events"]
    for row in live.values("day").annotate(users=Count("user", distinct=True)):
        users_per_day[row["day"]] = users_per_day.get(row["day"], 0) + row["users"]

    local: dict[date, int] = {}
    cloud: dict[date, int] = {}
    models: dict[str, int] = {}
    downloads: dict[str, int] = {}
    for (day, name, model, provider), events in rows.items():
        if name == UsageEventName.MESSAGE_SENT:
            bucket = local if provider == "local" else cloud
            bucket[day] = bucket.get(day, 0) + events
            models[model] = models.get(model, 0) + events
        elif name == UsageEventName.MODEL_DOWNLOADED:
            downloads[model] = downloads.get(model, 0) + events
    series = [
        DayCounts(day=day, local=local.get(day, 0), cloud=cloud.get(day, 0), users=users_per_day.get(day, 0))
        for day in (first + timedelta(days=offset) for offset in range(days))
    ]
    people = User.objects.aggregate(total=Count("id"), agreeing=Count("id", filter=Q(analytics_enabled=True)))
    return UsageSummary(
        days=series,
        models=sorted(models.items(), key=lambda item: -item[1])[:10],
        downloads=sorted(downloads.items(), key=lambda item: -item[1])[:10],
        people_total=people["total"],
        people_agreeing=people["agreeing"],
    )

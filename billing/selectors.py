"""Reads of billing: a person's plan, their usage windows and meters, what is for sale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone

from accounts.models import User

from .models import Invoice, Plan, Subscription, UsageCounter, UsageKind


def plan_default() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def subscription_of(*, user: User) -> Subscription | None:
    return Subscription.objects.select_related("plan").filter(user=user).first()


_UNREAD: Any = object()


def plan_of(*, user: User, subscription: Subscription | None = _UNREAD) -> Plan | None:
    """The plan in force for ``user``: theirs, else the default one; None when there is
    no plan at all (nothing is limited then). ``subscription``: theirs, if the caller has
    read it already (None: they have none)."""
    if subscription is _UNREAD:
        subscription = subscription_of(user=user)
    if subscription is not None and subscription.plan is not None:
        return subscription.plan
    return plan_default()


def plans_for_sale() -> QuerySet[Plan]:
    """Plans Checkout can sell: only with billing on, and only those with a Stripe price."""
    if not settings.BILLING_ENABLED:
        return Plan.objects.none()
    return Plan.objects.exclude(stripe_price_id="")


def upload_limit_for(*, user: User) -> int:
    """The largest file ``user`` may upload, in bytes: their plan's, never above the instance's."""
    plan = plan_of(user=user)
    if plan is None or plan.max_upload_mb is None:
        return settings.UPLOAD_MAX_BYTES
    return min(settings.UPLOAD_MAX_BYTES, plan.max_upload_mb * 1024 * 1024)


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))  # in TIME_ZONE


def usage_window(
    *, kind: UsageKind, subscription: Subscription | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window ``now`` falls in: a calendar day in the instance's time zone for messages;
    the billing period for images, or the calendar month without a running one."""
    today = timezone.localdate(now)
    if kind == UsageKind.CLOUD_MESSAGE:
        return _midnight(today), _midnight(today + timedelta(days=1))
    if (
        subscription is not None
        and subscription.current_period_start is not None
        and subscription.current_period_end is not None
        and subscription.current_period_start <= now < subscription.current_period_end
    ):
        return subscription.current_period_start, subscription.current_period_end
    first = today.replace(day=1)
    return _midnight(first), _midnight((first + timedelta(days=32)).replace(day=1))


def limit_of(plan: Plan, kind: UsageKind) -> int | None:
    return (
        plan.cloud_messages_per_day if kind == UsageKind.CLOUD_MESSAGE else plan.image_generations_per_month
    )


@dataclass(frozen=True)
class Meter:
    kind: UsageKind
    label: str
    used: int
    limit: int | None
    resets_at: datetime

    @property
    def percent(self) -> int:
        return 0 if not self.limit else min(100, round(100 * self.used / self.limit))


def usage_meters(*, user: User) -> list[Meter]:
    subscription = subscription_of(user=user)
    plan = plan_of(user=user, subscription=subscription)
    now = timezone.now()
    meters = []
    for kind, label in (
        (
            UsageKind.CLOUD_MESSAGE,
            "Messages today" if plan and plan.local_limited else "Cloud messages today",
        ),
        (UsageKind.IMAGE, "Image generations this period"),
    ):
        start, end = usage_window(kind=kind, subscription=subscription, now=now)
        counter = UsageCounter.objects.filter(user=user, kind=kind, window_start=start).first()
        limit = limit_of(plan, kind) if plan else None
        meters.append(Meter(kind, label, counter.used if counter else 0, limit, end))
    return meters


def invoices_of(*, user: User) -> QuerySet[Invoice]:
    return Invoice.objects.filter(user=user)


def people_per_plan() -> list[tuple[Plan, int]]:
    """How many people are on each plan (those with none on the default one)."""
    chosen = dict(
        Subscription.objects.filter(plan__isnull=False).values_list("plan").annotate(n=Count("id")).order_by()
    )
    on_default = User.objects.count() - sum(chosen.values())
    return [
        (plan, chosen.get(plan.pk, 0) + (on_default if plan.is_default else 0)) for plan in Plan.objects.all()
    ]

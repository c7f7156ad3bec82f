"""Stripe's webhook events: received (verified, recorded once), then applied in a task, and
subscriptions re-read from Stripe (after an event, or by the reconciliation command).

Stripe retries for three days and keeps no order, so an event's own copy of a subscription
may be old news: every event about one makes us read it from the API, and a state read
earlier than the one applied is ignored. Invoices carry their event's time for the same check.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue

from . import stripe_api
from .models import ENTITLED_STATUSES, Invoice, Plan, StripeEvent, Subscription, SubscriptionStatus
from .stripe_api import StripeUnavailable

logger = logging.getLogger(__name__)

HANDLED_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    }
)
# An event not applied this long after it came (its task was lost) is applied again.
RETRY_AFTER = timedelta(minutes=2)
FINAL_STATUSES = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _at_or_none(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else _at(timestamp)


def _id_of(field: str | dict | None) -> str:
    """A reference Stripe sends as an id, or as the object when it was expanded."""
    if isinstance(field, dict):
        return field.get("id", "")
    return field or ""


def stripe_event_receive(*, payload: bytes, signature: str | None) -> StripeEvent | None:
    """Record a webhook event once and start applying it; None for events billing ignores
    (acknowledged, nothing kept). Refusal ``bad_signature`` when Stripe did not sign it."""
    event = stripe_api.webhook_event(payload=payload, signature=signature)
    if event is None:
        raise Refusal("bad_signature", "The Stripe-Signature header is missing, wrong or too old.")
    if event["type"] not in HANDLED_EVENTS:
        return None
    with transaction.atomic():
        recorded, created = StripeEvent.objects.get_or_create(
            stripe_event_id=event["id"],
            defaults={"type": event["type"], "created": _at(event["created"]), "payload": event},
        )
        if created:
            transaction.on_commit(
                lambda: task_enqueue("billing.apply_event", recorded.pk, queue=Queue.DEFAULT)
            )
    return recorded


def _subscription_row(obj: dict[str, Any], event_type: str) -> Subscription | None:
    customer_id = _id_of(obj.get("customer"))
    row = Subscription.objects.filter(stripe_customer_id=customer_id).first() if customer_id else None
    if row is None and event_type == "checkout.session.completed":
        # Checkout names the person we sent there (their customer was made then too).
        user = User.objects.filter(pk=obj.get("client_reference_id") or 0).first()
        row = Subscription.objects.filter(user=user).first() if user else None
    return row


def _subscription_id_of(obj: dict[str, Any], event_type: str, row: Subscription) -> str:
    if event_type.startswith("customer.subscription."):
        return obj["id"]
    if event_type == "checkout.session.completed":
        return _id_of(obj.get("subscription"))
    parent = (obj.get("parent") or {}).get("subscription_details") or {}
    return _id_of(parent.get("subscription")) or row.stripe_subscription_id


def stripe_event_apply(*, event_id: int) -> None:
    """Apply a recorded event: read the subscription it is about from Stripe (outside any
    transaction), then, in one transaction, its effect, the event marked applied and its
    payload dropped. StripeUnavailable leaves it to be retried (``events_retry``)."""
    event = StripeEvent.objects.filter(pk=event_id, processed_at__isnull=True).first()
    if event is None:
        return  # applied already
    obj = (event.payload or {})["data"]["object"]  # kept until the event is applied
    row = _subscription_row(obj, event.type)
    fetched, read_at = None, timezone.now()
    subscription_id = _subscription_id_of(obj, event.type, row) if row else ""
    if subscription_id:
        fetched = stripe_api.subscription_retrieve(subscription_id)
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().filter(pk=event_id, processed_at__isnull=True).first()
        if event is None:
            return
        if row is not None:  # locked, fresh; None if they were erased meanwhile
            row = Subscription.objects.select_for_update().filter(pk=row.pk).first()
        if row is not None:
            if event.type == "checkout.session.completed" and fetched is not None:
                row.assigned_by_admin = False  # the person bought a plan: theirs now, not the admin's
                row.stripe_subscription_id = fetched["id"]
                row.stripe_customer_id = row.stripe_customer_id or _id_of(obj.get("customer"))
            if event.type.startswith("invoice."):
                _invoice_apply(obj, user_id=row.user_id, event_at=event.created)
            if fetched is not None:
                _subscription_apply(row, fetched, read_at=read_at)
        # Otherwise nobody here is its customer (an erased person's, another instance's).
        event.processed_at = timezone.now()
        event.payload = None
        event.save(update_fields=["processed_at", "payload"])


def _invoice_apply(obj: dict[str, Any], *, user_id: int, event_at: datetime) -> None:
    invoice = Invoice.objects.select_for_update().filter(stripe_invoice_id=obj["id"]).first()
    if invoice is not None and (invoice.state_at > event_at or invoice.status == "paid"):
        return  # a later event about it was applied already, or it is paid: that is final
    paid = obj.get("status") == "paid"
    values = {
        "user_id": user_id,
        "stripe_customer_id": _id_of(obj.get("customer")),
        "number": obj.get("number") or "",
        "created_at": _at(obj["created"]),
        "amount": obj.get("amount_paid") if paid else obj.get("amount_due", 0),
        "currency": obj.get("currency", ""),
        "status": obj.get("status") or "",
        "hosted_invoice_url": obj.get("hosted_invoice_url") or "",
        "state_at": event_at,
    }
    Invoice.objects.update_or_create(stripe_invoice_id=obj["id"], defaults=values)


def _subscription_apply(row: Subscription, sub: dict[str, Any], *, read_at: datetime) -> None:
    """Make ``row`` (locked) say what Stripe said of ``sub`` at ``read_at``."""
    if row.state_at is not None and read_at < row.state_at:
        return  # what was applied was read later than this
    other = row.stripe_subscription_id and sub["id"] != row.stripe_subscription_id
    if other and sub["status"] not in ENTITLED_STATUSES:
        return  # an older subscription of theirs, ending: not the one in force
    status = sub["status"] if sub["status"] in SubscriptionStatus.values else SubscriptionStatus.NONE
    [item, *_] = sub["items"]["data"]
    row.stripe_subscription_id = sub["id"]
    row.status = status
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end") or sub.get("cancel_at"))
    row.current_period_start = _at_or_none(item.get("current_period_start"))
    row.current_period_end = _at_or_none(sub.get("cancel_at") or item.get("current_period_end"))
    row.state_at = read_at
    if not row.assigned_by_admin:
        if status in ENTITLED_STATUSES:
            price_id = item["price"]["id"]
            plan = Plan.objects.filter(stripe_price_id=price_id).first()
            if plan is None:
                logger.warning("Subscription %s is for price %s, which no plan sells.", sub["id"], price_id)
            else:
                row.plan = plan
        else:
            row.plan = None  # ended (or never paid for): the default plan
    row.save()


def subscription_sync(*, subscription: Subscription) -> None:
    """Read ``subscription``'s Stripe subscription again and apply what it says now."""
    read_at = timezone.now()
    fetched = stripe_api.subscription_retrieve(subscription.stripe_subscription_id)
    if fetched is None:
        return
    with transaction.atomic():
        _subscription_apply(
            Subscription.objects.select_for_update().get(pk=subscription.pk), fetched, read_at=read_at
        )


def events_retry() -> int:
    """Apply events whose task was lost or failed (Stripe was down); returns how many remain."""
    pending = StripeEvent.objects.filter(
        processed_at__isnull=True, received_at__lt=timezone.now() - RETRY_AFTER
    ).values_list("pk", flat=True)
    left = 0
    for event_id in list(pending):
        try:
            stripe_event_apply(event_id=event_id)
        except StripeUnavailable:
            left += 1
    return left


def subscriptions_reconcile(*, everyone: bool = False) -> tuple[int, int]:
    """Re-read from Stripe the subscriptions whose state is in doubt (every one not ended,
    or all with ``everyone``) after retrying pending events; returns (read, failed)."""
    failed = events_retry()
    doubtful = Subscription.objects.exclude(stripe_subscription_id="")
    if not everyone:
        doubtful = doubtful.exclude(status__in=FINAL_STATUSES)
    read = 0
    for subscription in doubtful.iterator():
        try:
            subscription_sync(subscription=subscription)
            read += 1
        except StripeUnavailable:
            failed += 1
    return read, failed

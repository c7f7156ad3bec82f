"""Everything that changes billing data except Stripe's events (``webhooks``): quotas spent
where work is dispatched, plans assigned by admins, Checkout and the Customer Portal, and a
person's Stripe customer ended before they are erased."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import formats, timezone

from accounts.models import User
from localai_site.core.refusals import Refusal

from . import stripe_api
from .models import ENTITLED_STATUSES, Plan, Subscription, UsageCounter, UsageKind
from .selectors import limit_of, plan_of, plans_for_sale, subscription_of, usage_window
from .stripe_api import StripeUnavailable

logger = logging.getLogger(__name__)

STRIPE_UNAVAILABLE = "Stripe, the payment provider, did not answer. Try again in a moment."


def _upgrade_offer(plan: Plan, fits: Callable[[Plan], bool]) -> str:
    """Where to get more: the plans after ``plan`` that ``fits`` the need."""
    offered = plans_for_sale() if settings.BILLING_ENABLED else Plan.objects.all()
    bigger = [
        candidate.name for candidate in offered if candidate.position > plan.position and fits(candidate)
    ]
    if not bigger:
        return "An admin can raise your plan's limits."
    if settings.BILLING_ENABLED:
        return f"For more, upgrade to {' or '.join(bigger)} on your plan page ({reverse('billing:plan')})."
    return f"An admin can move you to {' or '.join(bigger)}."


def _reset_phrase(moment) -> str:
    local = timezone.localtime(moment)
    day = formats.date_format(local, "l j F Y")
    return f"{formats.date_format(local, 'H:i')} on {day} ({settings.TIME_ZONE})"


def quota_spend(*, user: User, kind: UsageKind, model_id: str = "", local: bool = False) -> None:
    """Count one unit of ``kind`` for ``user`` in its window, or refuse (``quota_exceeded``,
    ``plan_model``) when their plan does not allow it. Call it inside the transaction that
    records the work: the conditional increment below lets only one of two concurrent
    requests spend the last unit, and a refusal rolls the work back."""
    subscription = subscription_of(user=user)
    plan = plan_of(user=user, subscription=subscription)
    if plan is None:
        return  # no plans on this instance: nothing is limited
    if kind == UsageKind.CLOUD_MESSAGE and local and not plan.local_limited:
        return  # local models cost nothing per message
    if model_id and not local and plan.cloud_model_ids and model_id not in plan.cloud_model_ids:
        raise Refusal(
            "plan_model",
            f"That model is not part of the {plan.name} plan. "
            + _upgrade_offer(
                plan, lambda other: not other.cloud_model_ids or model_id in other.cloud_model_ids
            ),
        )
    start, end = usage_window(kind=kind, subscription=subscription, now=timezone.now())
    limit = limit_of(plan, kind)
    window = UsageCounter.objects.filter(user=user, kind=kind, window_start=start)
    spendable = window if limit is None else window.filter(used__lt=limit)  # unlimited: for the meters
    if spendable.update(used=F("used") + 1):
        return  # the usual case, in one statement: the window's counter exists and has room
    # The window's first unit, or none left in it.
    UsageCounter.objects.get_or_create(user=user, kind=kind, window_start=start)
    if not spendable.update(used=F("used") + 1) and limit is not None:
        raise Refusal(
            "quota_exceeded",
            f"You have used all {limit} {kind.label} of your {plan.name} plan for this "
            f"{'day' if kind == UsageKind.CLOUD_MESSAGE else 'period'}. They reset at {_reset_phrase(end)}. "
            + _upgrade_offer(plan, lambda other: (more := limit_of(other, kind)) is None or more > limit),
        )


def quota_return(*, user: User, kind: UsageKind, spent_at: datetime, units: int = 1) -> None:
    """Give back ``units`` spent at ``spent_at`` for work that failed without a result (an
    image the provider refused): counted in the window they were spent in, never below zero."""
    start, _ = usage_window(kind=kind, subscription=subscription_of(user=user), now=spent_at)
    UsageCounter.objects.filter(user=user, kind=kind, window_start=start, used__gte=units).update(
        used=F("used") - units
    )


@transaction.atomic
def plan_assign(*, user: User, plan: Plan | None) -> Subscription:
    """An admin puts ``user`` on ``plan`` by hand (None: back to the default plan and to what
    they buy). Stripe's events leave a plan set by hand alone until the person buys one."""
    subscription, _ = Subscription.objects.select_for_update().get_or_create(user=user)
    subscription.plan = plan
    subscription.assigned_by_admin = plan is not None
    subscription.save(update_fields=["plan", "assigned_by_admin", "updated_at"])
    return subscription


def _billing_on() -> None:
    if not settings.BILLING_ENABLED:
        raise Refusal("billing_off", "Plans are not sold on this instance; an admin assigns them.")


def _customer_of(user: User) -> str:
    """The Stripe customer of ``user``, made the first time they buy."""
    subscription = subscription_of(user=user)
    if subscription is not None and subscription.stripe_customer_id:
        return subscription.stripe_customer_id
    try:
        customer_id = stripe_api.customer_create(email=user.email, user_id=user.pk)
    except StripeUnavailable:
        raise Refusal("stripe_unavailable", STRIPE_UNAVAILABLE) from None
    with transaction.atomic():
        subscription, _ = Subscription.objects.select_for_update().get_or_create(user=user)
        if subscription.stripe_customer_id:  # another tab made one meanwhile: keep that one
            return subscription.stripe_customer_id
        subscription.stripe_customer_id = customer_id
        subscription.save(update_fields=["stripe_customer_id", "updated_at"])
    return customer_id


def checkout_start(*, user: User, plan: Plan, success_url: str, cancel_url: str) -> str:
    """The address of a Stripe Checkout page where ``user`` subscribes to ``plan``."""
    _billing_on()
    if not plan.stripe_price_id or not plans_for_sale().filter(pk=plan.pk).exists():
        raise Refusal("not_for_sale", f"{plan.name} cannot be bought here; an admin assigns it.")
    current = subscription_of(user=user)
    if current is not None and current.stripe_subscription_id and current.status in ENTITLED_STATUSES:
        raise Refusal(
            "already_subscribed",
            "You have a subscription already: change or cancel it with “Manage billing”.",
        )
    try:
        return stripe_api.checkout_session_create(
            customer_id=_customer_of(user),
            price_id=plan.stripe_price_id,
            user_id=user.pk,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except StripeUnavailable:
        raise Refusal("stripe_unavailable", STRIPE_UNAVAILABLE) from None


def portal_open(*, user: User, return_url: str) -> str:
    """The address of a Customer Portal session: payment method, plan changes, cancelling."""
    _billing_on()
    subscription = subscription_of(user=user)
    if subscription is None or not subscription.stripe_customer_id:
        raise Refusal("no_customer", "You have bought nothing yet: choose a plan first.")
    try:
        return stripe_api.portal_session_create(
            customer_id=subscription.stripe_customer_id, return_url=return_url
        )
    except StripeUnavailable:
        raise Refusal("stripe_unavailable", STRIPE_UNAVAILABLE) from None


def stripe_customer_end(user: User) -> None:
    """Before ``user`` is erased: their Stripe customer is deleted, which cancels their
    subscription at once. Stripe unreachable stops the erasure (``stripe_unavailable``), to be
    tried again (a customer deleted already is fine)."""
    subscription = Subscription.objects.filter(user=user).exclude(Q(stripe_customer_id="")).first()
    if subscription is None:
        return
    if not settings.BILLING_ENABLED:
        logger.warning(
            "Billing is off, so Stripe customer %s of an erased person is left: delete it in Stripe.",
            subscription.stripe_customer_id,
        )
        return
    try:
        stripe_api.customer_delete(subscription.stripe_customer_id)  # which cancels its subscriptions
    except StripeUnavailable:
        raise Refusal(
            "stripe_unavailable",
            "Stripe did not answer, so the subscription could not be cancelled: nothing was erased. "
            "Try again in a moment.",
        ) from None

"""Stripe's API, the calls billing makes, through the stripe library pointed at
``STRIPE_API_BASE``. Each goes over the network: call none inside a database transaction.
A failure is ``StripeUnavailable``; answers are plain dicts."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


class StripeUnavailable(Exception):
    """Stripe did not answer, or refused the call (the library's error is chained)."""


def _client():
    import stripe  # loaded when billing talks to Stripe, not by every process at start

    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=2,
    )


def _call(what: str, call) -> dict[str, Any]:
    import stripe

    try:
        return call(_client().v1).to_dict()
    except stripe.StripeError as exc:
        # The library's message names the request, never card data (we send none).
        logger.warning("Stripe: %s failed: %s", what, exc)
        raise StripeUnavailable(what) from exc


def _missing(exc: StripeUnavailable) -> bool:
    """Whether Stripe answered that the object does not exist (any more)."""
    cause = exc.__cause__
    return getattr(cause, "code", None) == "resource_missing"


def customer_create(*, email: str, user_id: int) -> str:
    created = _call(
        "creating a customer",
        lambda v1: v1.customers.create(params={"email": email, "metadata": {"localai_user": str(user_id)}}),
    )
    return created["id"]


def customer_delete(customer_id: str) -> None:
    """Stripe ends the customer's subscriptions at once too; gone already is fine."""
    try:
        _call("deleting a customer", lambda v1: v1.customers.delete(customer_id))
    except StripeUnavailable as exc:
        if not _missing(exc):
            raise


def checkout_session_create(
    *, customer_id: str, price_id: str, user_id: int, success_url: str, cancel_url: str
) -> str:
    """A Checkout page selling ``price_id`` as a subscription; returns its address."""
    session = _call(
        "creating a Checkout session",
        lambda v1: v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": str(user_id),
                "line_items": [{"price": price_id, "quantity": 1}],
                "success_url": success_url,
                "cancel_url": cancel_url,
            }
        ),
    )
    return session["url"]


def portal_session_create(*, customer_id: str, return_url: str) -> str:
    session = _call(
        "creating a Customer Portal session",
        lambda v1: v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": return_url}
        ),
    )
    return session["url"]


def subscription_retrieve(subscription_id: str) -> dict[str, Any] | None:
    """The subscription as Stripe has it now; None if Stripe has no such subscription."""
    try:
        return _call("reading a subscription", lambda v1: v1.subscriptions.retrieve(subscription_id))
    except StripeUnavailable as exc:
        if _missing(exc):
            return None
        raise


def webhook_event(*, payload: bytes, signature: str | None) -> dict[str, Any] | None:
    """The event ``payload`` is, if ``signature`` (the Stripe-Signature header) proves Stripe
    sent it within the library's tolerance (five minutes); None otherwise."""
    import stripe

    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except (ValueError, stripe.SignatureVerificationError):
        return None
    return event.to_dict()

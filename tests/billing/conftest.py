import json

import pytest
from django.urls import reverse

from billing.models import Plan, StripeEvent
from billing.tasks import apply_event
from tests.billing.stripe_server import FakeStripe, stripe_signature

WEBHOOK_SECRET = "whsec_loopback"
CHAT_PRO_PRICE = "price_chat_pro"
ART_PRO_PRICE = "price_art_pro"


@pytest.fixture
def plans(db) -> dict[str, Plan]:
    """The three default plans (as the data migration ships them), sold at loopback prices."""
    defaults = {
        "free": {"name": "Free", "is_default": True, "position": 0, "cloud_messages_per_day": 30},
        "ai-chat-pro": {"name": "AI Chat Pro", "position": 10, "cloud_messages_per_day": 500},
        "ai-art-pro": {"name": "AI Art Pro", "position": 20, "cloud_messages_per_day": 500},
    }
    prices = {"free": "", "ai-chat-pro": CHAT_PRO_PRICE, "ai-art-pro": ART_PRO_PRICE}
    found = {}
    for slug, values in defaults.items():
        plan, _ = Plan.objects.get_or_create(slug=slug, defaults=values)
        plan.stripe_price_id = prices[slug]
        plan.save()
        found[slug] = plan
    return found


@pytest.fixture
def stripe_server():
    server = FakeStripe()
    yield server
    server.stop()


@pytest.fixture
def billing_on(settings, stripe_server, plans) -> FakeStripe:
    """Billing on, against the loopback Stripe."""
    settings.STRIPE_SECRET_KEY = "sk_test_loopback"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = stripe_server.base_url
    settings.BILLING_ENABLED = True
    return stripe_server


def webhook_post(client, event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    payload = json.dumps(event).encode()
    return client.post(
        reverse("billing:stripe_webhook"),
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_signature(payload, secret, timestamp=timestamp),
    )


def deliver(client, *events: dict) -> None:
    """Stripe sends each event; the worker applies what was recorded (as its task would)."""
    for event in events:
        assert webhook_post(client, event).status_code == 200
        for pending in StripeEvent.objects.filter(processed_at__isnull=True):
            apply_event(pending.pk)

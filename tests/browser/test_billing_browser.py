"""A person goes Free → AI Chat Pro → cancelled, in Chromium, against the loopback Stripe.

Stripe's Checkout and portal pages are Stripe's: the loopback Stripe sends the browser
straight back, as if the person had paid (or cancelled), and the test sends the signed
webhooks Stripe would."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from billing.models import Plan, StripeEvent, Subscription
from tests.billing.conftest import CHAT_PRO_PRICE, WEBHOOK_SECRET
from tests.billing.stripe_server import FakeStripe, stripe_signature

from .base import BrowserTestCase, screenshot, sign_up

pytestmark = pytest.mark.browser


class BillingBrowserTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        cls.stripe = FakeStripe(checkout_url="{success_url}", portal_url="{return_url}")
        cls.addClassCleanup(cls.stripe.stop)
        billing = override_settings(
            STRIPE_SECRET_KEY="sk_test_loopback",
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_API_BASE=cls.stripe.base_url,
            BILLING_ENABLED=True,
        )
        billing.enable()  # before the server is forked: its settings too
        cls.addClassCleanup(billing.disable)
        super().setUpClass()

    def setUp(self):
        super().setUp()
        # The flush after each test removes the plans the migration made.
        Plan.objects.get_or_create(
            slug="free", defaults={"name": "Free", "is_default": True, "cloud_messages_per_day": 30}
        )
        Plan.objects.update_or_create(
            slug="ai-chat-pro",
            defaults={
                "name": "AI Chat Pro",
                "position": 10,
                "cloud_messages_per_day": 500,
                "stripe_price_id": CHAT_PRO_PRICE,
            },
        )

    def _stripe_sends(self, *events: dict) -> None:
        for event in events:
            payload = json.dumps(event).encode()
            request = urllib.request.Request(
                f"{self.live_server_url}/billing/stripe/webhook/",
                data=payload,
                headers={
                    "Content-Type": "application/json",
                    "Stripe-Signature": stripe_signature(payload, WEBHOOK_SECRET),
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        # Recorded by the time the answer came; applied by the server's task pool.
        self.wait_until(
            lambda: not StripeEvent.objects.filter(processed_at__isnull=True).exists(),
            what="the server to apply Stripe's events",
        )

    def test_free_then_ai_chat_pro_then_cancelled(self):
        page = self.page
        sign_up(page, self.live_server_url, "payer@example.com")
        page.click("nav.topnav >> text=Plan")
        current = page.locator("#current-plan h2")
        expect(current).to_have_text("Free")
        expect(page.locator("#usage .meter-limit").first).to_have_text("30")

        page.click("text=Upgrade to AI Chat Pro")
        page.wait_for_url(f"{self.live_server_url}/billing/?checkout=done")
        expect(page.locator("text=Thank you!")).to_be_visible()
        [session_id] = self.stripe.sessions
        self._stripe_sends(*self.stripe.checkout_complete(session_id))
        page.click("text=refresh")
        expect(current).to_have_text("AI Chat Pro")
        expect(page.locator("#usage .meter-limit").first).to_have_text("500")
        expect(page.locator(".subscription-status")).to_contain_text("renews")
        expect(page.locator("#invoices")).to_contain_text("9.00 EUR")
        screenshot(page, "billing-ai-chat-pro", full_page=True)

        page.click("text=Manage billing")  # the portal, where they cancel
        page.wait_for_url(f"{self.live_server_url}/billing/")
        sub_id = Subscription.objects.get(user__email="payer@example.com").stripe_subscription_id
        self._stripe_sends(self.stripe.subscription_change(sub_id, status="canceled"))
        page.reload()
        expect(current).to_have_text("Free")
        expect(page.locator("#usage .meter-limit").first).to_have_text("30")
        expect(page.locator("text=Upgrade to AI Chat Pro")).to_be_visible()

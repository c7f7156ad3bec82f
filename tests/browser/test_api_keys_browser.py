"""Making an API key in Settings on a phone: shown once, readable, and never again."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey

from .base import BrowserTestCase, screenshot, sign_up
from .test_responsive_browser import A_PHONE, sideways_overflow

pytestmark = pytest.mark.browser


class ApiKeysTests(BrowserTestCase):
    device = A_PHONE

    def test_a_new_key_is_shown_once_and_fits_a_phone(self):
        sign_up(self.page, self.live_server_url, "keys@example.com")
        self.page.goto(f"{self.live_server_url}/settings/profile/")
        self.page.click("text=API keys")
        self.page.fill("input[name=name]", "my editor")
        self.page.click("button:has-text('Make the key')")
        secret = self.page.input_value("#new-key-value")
        assert secret.startswith("lai_") and ApiKey.objects.get().prefix == secret[:12]
        assert secret in self.page.inner_text(".api-example")
        screenshot(self.page, "api-key-new-phone", full_page=True)
        assert sideways_overflow(self.page) is None

        self.page.goto(f"{self.live_server_url}/settings/api-keys/")
        assert secret not in self.page.content() and f"{secret[:12]}…" in self.page.inner_text("table")
        self.page.click("button:has-text('Revoke')")
        assert "is revoked" in self.page.inner_text("body")
        assert ApiKey.objects.get().revoked_at is not None

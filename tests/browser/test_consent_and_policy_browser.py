"""Consent and the privacy policy, clicked through in Chromium."""

import pytest

from accounts.models import Consent, ConsentPurpose, User
from tests.conftest import PASSWORD

from .base import BrowserTestCase, screenshot, sign_up

pytestmark = pytest.mark.browser


class ConsentAndPolicyTests(BrowserTestCase):
    def test_signup_needs_the_age_confirmation(self):
        User.objects.create_user("admin@example.com", PASSWORD, is_staff=True, is_superuser=True)
        page = self.page
        page.goto(f"{self.live_server_url}/accounts/signup/")
        page.fill("input[name=email]", "young@example.com")
        page.fill("input[name=password1]", PASSWORD)
        page.fill("input[name=password2]", PASSWORD)
        page.click("form[action='/accounts/signup/'] button[type=submit]")
        # The browser itself stops the form: the box is required.
        assert page.url.endswith("/accounts/signup/")
        assert page.eval_on_selector("input[name=minimum_age]", "el => !el.validity.valid")
        assert not User.objects.filter(email="young@example.com").exists()

    def test_analytics_given_at_signup_are_withdrawn_with_one_click(self):
        page = self.page
        sign_up(page, self.live_server_url, "ann@example.com", analytics=True)
        page.click("text=Privacy")
        page.get_by_text("Analytics are on.").wait_for()
        page.click("button:has-text('Turn analytics off')")
        page.get_by_text("Analytics are off.").first.wait_for()
        page.click("text=Your choices so far")
        history = page.locator(".consent-history")
        assert "withdrawn" in history.inner_text() and "In privacy settings" in history.inner_text()
        screenshot(page, "privacy-consent")
        assert not User.objects.get(email="ann@example.com").analytics_enabled

    def test_a_significant_policy_change_is_shown_once_on_the_next_visit(self):
        admin_page = self.page
        sign_up(admin_page, self.live_server_url, "admin@example.com", analytics=False)
        reader = self.browser.new_context().new_page()
        sign_up(reader, self.live_server_url, "reader@example.com", analytics=False)

        admin_page.goto(f"{self.live_server_url}/admin/accounts/policyversion/add/")
        admin_page.fill("textarea[name=body]", "## What we keep\n\nNow also usage analytics, if you agree.")
        admin_page.fill("input[name=summary]", "Usage analytics, with consent.")
        admin_page.check("input[name=significant]")
        admin_page.click("input[name=_save]")
        admin_page.get_by_text("was added successfully").wait_for()
        admin_page.goto(f"{self.live_server_url}/")
        assert admin_page.url == f"{self.live_server_url}/"  # its author is not asked to review it

        reader.goto(f"{self.live_server_url}/")
        reader.get_by_role("heading", name="Our privacy policy changed").wait_for()
        assert "Usage analytics, with consent." in reader.inner_text(".notice")
        assert "Now also usage analytics" in reader.inner_text("article.policy")
        screenshot(reader, "policy-review")
        reader.click("button:has-text('I have read it')")
        reader.wait_for_url(f"{self.live_server_url}/")
        reader.goto(f"{self.live_server_url}/")
        assert reader.url == f"{self.live_server_url}/"
        assert Consent.objects.filter(
            user__email="reader@example.com", purpose=ConsentPurpose.PRIVACY_POLICY, version="policy-1"
        ).exists()

        reader.goto(f"{self.live_server_url}/privacy/")
        assert "Version 1 · Last updated" in reader.inner_text(".policy-meta")

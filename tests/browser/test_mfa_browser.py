"""Two-factor sign-in in Chromium: an admin requires it for staff and is sent to set up an
authenticator app before the admin opens again; the next sign-ins ask for a code, and a
recovery code works once. Passkeys are made and used by Chromium's virtual authenticator
(DevTools' WebAuthn domain), which answers the browser's prompt as a phone or laptop would."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator

from accounts.models import InstanceSettings, MfaRequirement, User
from tests.conftest import PASSWORD
from tests.second_factors import totp_code

from .base import BrowserTestCase, screenshot, sign_up
from .test_responsive_browser import A_PHONE, sideways_overflow

pytestmark = pytest.mark.browser


class MfaTests(BrowserTestCase):
    device = A_PHONE

    def sign_in(self, email: str) -> None:
        self.page.goto(f"{self.live_server_url}/accounts/login/")
        self.page.fill("input[name=login]", email)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("form[action='/accounts/login/'] button[type=submit]")

    def sign_out(self) -> None:
        self.page.goto(f"{self.live_server_url}/accounts/logout/")
        self.page.click("main form button[type=submit]")
        self.page.wait_for_url(f"{self.live_server_url}/accounts/login/**")

    def second_step(self, code: str) -> None:
        self.page.wait_for_url("**/accounts/2fa/authenticate/")
        self.page.fill("input[name=code]", code)
        self.page.click("button:has-text('Sign in')")

    def confirm_password(self) -> None:
        """allauth asks for the password again before a second factor is added."""
        self.page.wait_for_url("**/accounts/reauthenticate/**")
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("main form button[type=submit]")

    def test_staff_must_set_up_an_authenticator_app_before_the_admin_opens(self):
        User.objects.create_superuser("admin@example.com", PASSWORD)
        InstanceSettings.load()
        page, base = self.page, self.live_server_url
        self.sign_in("admin@example.com")
        page.wait_for_url(f"{base}/")

        page.goto(f"{base}/admin/accounts/instancesettings/1/change/")
        page.select_option("select[name=mfa_required]", MfaRequirement.STAFF)
        page.click("input[name=_save]")
        page.wait_for_url(f"{base}/accounts/2fa/")
        assert "The admin opens only for staff with two-factor sign-in" in page.inner_text("main")
        page.goto(f"{base}/admin/")
        assert page.url == f"{base}/accounts/2fa/"
        screenshot(page, "mfa-required-phone", full_page=True)
        assert sideways_overflow(page) is None

        page.click("text=Set up an authenticator app")
        self.confirm_password()
        page.wait_for_url(f"{base}/accounts/2fa/totp/activate/")
        assert page.locator("img.totp-qr").evaluate("img => img.naturalWidth > 0")
        secret = page.inner_text("#totp-secret")
        screenshot(page, "mfa-totp-setup-phone", full_page=True)
        assert sideways_overflow(page) is None
        page.fill("input[name=code]", totp_code(secret))
        page.click("button:has-text('Turn on')")
        page.wait_for_url(f"{base}/accounts/2fa/recovery-codes/")
        codes = page.input_value("#recovery-codes").split()
        assert len(codes) == 10
        screenshot(page, "mfa-recovery-codes-phone", full_page=True)
        assert sideways_overflow(page) is None
        with page.expect_download() as download:
            page.click("text=Download")
        assert download.value.suggested_filename == "recovery-codes.txt"

        page.goto(f"{base}/admin/")
        page.get_by_role("heading", name="Site administration").wait_for()

        # The next sign-in asks for a code from the app.
        self.sign_out()
        self.sign_in("admin@example.com")
        self.second_step("000000" if totp_code(secret) != "000000" else "111111")
        assert "Incorrect code" in page.inner_text("main")
        screenshot(page, "mfa-second-step-phone", full_page=True)
        assert sideways_overflow(page) is None
        self.second_step(totp_code(secret))
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/admin/")
        page.get_by_role("heading", name="Site administration").wait_for()

        # A recovery code signs in once.
        self.sign_out()
        self.sign_in("admin@example.com")
        self.second_step(codes[0])
        page.wait_for_url(f"{base}/")
        self.sign_out()
        self.sign_in("admin@example.com")
        self.second_step(codes[0])
        assert "Incorrect code" in page.inner_text("main")
        assert page.url.endswith("/accounts/2fa/authenticate/")

    def test_a_passkey_is_added_and_signs_in_alone_or_as_the_second_step(self):
        cdp = self.context.new_cdp_session(self.page)
        cdp.send("WebAuthn.enable")
        cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )
        page, base = self.page, self.live_server_url
        sign_up(page, base, "ann@example.com")
        page.goto(f"{base}/settings/profile/")
        page.click("text=Two-factor sign-in")
        page.click("text=Add a passkey")
        self.confirm_password()
        page.wait_for_url(f"{base}/accounts/2fa/webauthn/add/")
        assert sideways_overflow(page) is None
        page.fill("input[name=name]", "Work laptop")
        page.click("#mfa_webauthn_add")
        page.wait_for_url(f"{base}/accounts/2fa/recovery-codes/")
        passkey = Authenticator.objects.get(type=Authenticator.Type.WEBAUTHN)
        assert passkey.wrap().name == "Work laptop" and passkey.wrap().is_passwordless

        page.goto(f"{base}/accounts/2fa/webauthn/")
        assert "Work laptop · passkey" in page.inner_text(".passkey-list")
        screenshot(page, "mfa-passkeys-phone", full_page=True)
        assert sideways_overflow(page) is None

        # Alone, in place of the password…
        self.sign_out()
        page.click("text=Sign in with a passkey")
        page.wait_for_url(f"{base}/")
        # …and as the second step after it.
        self.sign_out()
        self.sign_in("ann@example.com")
        page.wait_for_url("**/accounts/2fa/authenticate/")
        page.click("text=Use a passkey or security key")
        page.wait_for_url(f"{base}/")
        passkey.refresh_from_db()
        assert passkey.last_used_at is not None

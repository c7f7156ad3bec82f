"""Accessibility in Chromium: axe-core finds nothing serious or critical on any page of the
app in the light and the dark theme; the theme a person picks in their profile is what every
page shows, on any device they sign in on; a reply is announced once, when it ends.

axe-core comes bundled in the pinned ``axe-playwright-python`` (see pyproject's ``test``
extra); it is run with ``page.evaluate``, which the page's Content-Security-Policy does not
govern, so the policy stays as strict as in production.
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.test import override_settings
from playwright.sync_api import Page, expect

from accounts.models import Theme, User
from chat.models import Conversation, Message, MessageStatus, Persona, Role
from models_hub.services import bundled_model_register
from tests.conftest import PASSWORD

from .base import (
    REPLY_TIMEOUT_MS,
    SHORT_MAX_TOKENS,
    BrowserTestCase,
    last_reply,
    screenshot,
    send_from_home,
    sign_up,
)

pytestmark = pytest.mark.browser

AXE = Axe()
FAILING_IMPACTS = {"serious", "critical"}
SCHEMES = ("light", "dark")
# The page background of each theme (--bg in static/css/app.css), as getComputedStyle gives it.
BACKGROUND = {"light": "rgb(247, 247, 248)", "dark": "rgb(19, 20, 22)"}
REPLY = """Here is **how**, with `inline code` and [a link](https://example.com/):

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

| step | what |
| --- | --- |
| 1 | > quoted |
"""
SIGNED_OUT_PAGES = {
    "sign-in": "/accounts/login/",
    "sign-up": "/accounts/signup/",
    "password-reset": "/accounts/password/reset/",
    "policy": "/privacy/",
    "offline": "/offline/",  # what the service worker shows when the instance can't be reached
}


def serious_problems(page: Page) -> list[str]:
    """What axe-core reports of impact serious or critical, one line per rule and element."""
    violations = AXE.run(page).response["violations"]
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at {node['target']}"
        for violation in violations
        if violation["impact"] in FAILING_IMPACTS
        for node in violation["nodes"]
    ]


def page_background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.documentElement).backgroundColor")


def sign_in(page: Page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def conversation_with_every_kind_of_message(owner: User) -> Conversation:
    model = bundled_model_register().model_id
    conversation = Conversation.objects.create(owner=owner, model=model, title="Greet")
    Message.objects.create(conversation=conversation, role=Role.USER, content="How do I greet someone?")
    Message.objects.create(conversation=conversation, role=Role.ASSISTANT, content=REPLY, model=model)
    Message.objects.create(conversation=conversation, role=Role.USER, content="And in French?")
    Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        content="Bonj",
        model=model,
        status=MessageStatus.FAILED,
        error="The local model runtime stopped unexpectedly.",
    )
    return conversation


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class AccessibilityTests(BrowserTestCase):
    def _sweep(
        self, pages: dict[str, str], *, schemes=SCHEMES, chosen_theme: str | None = None, width: int = 1280
    ) -> list[str]:
        """Each page in each emulated colour scheme: axe's serious and critical findings; a
        screenshot of each. The page must show the theme expected: the device's, unless the
        person chose one."""
        self.page.set_viewport_size({"width": width, "height": 800})
        problems = []
        for scheme in schemes:
            self.page.emulate_media(color_scheme=scheme)
            theme = chosen_theme or scheme
            for name, path in pages.items():
                self.page.goto(f"{self.live_server_url}{path}")
                self.page.wait_for_load_state("load")
                screenshot(self.page, f"a11y-{width}-{theme}{'-chosen' if chosen_theme else ''}-{name}")
                if not path.startswith("/admin/"):  # the admin has its own theme switch
                    assert page_background(self.page) == BACKGROUND[theme], f"{path} in {scheme}"
                problems += [f"{path} ({theme}): {problem}" for problem in serious_problems(self.page)]
        return problems

    def test_signed_out_pages_have_no_serious_problems_in_either_theme(self):
        User.objects.create_superuser("admin@example.com", PASSWORD)  # else sign-up asks for the setup link
        problems = self._sweep(SIGNED_OUT_PAGES)
        self.page.goto(f"{self.live_server_url}/accounts/login/")
        self.page.fill("input[name=login]", "admin@example.com")
        self.page.fill("input[name=password]", "not the password")
        self.page.click("form[action='/accounts/login/'] button[type=submit]")
        for scheme in SCHEMES:  # the form's error message, in each theme
            self.page.emulate_media(color_scheme=scheme)
            problems += [f"failed sign-in ({scheme}): {problem}" for problem in serious_problems(self.page)]
        screenshot(self.page, "a11y-1280-dark-sign-in-failed")
        assert not problems, "\n".join(problems)

    def test_signed_in_pages_have_no_serious_problems_in_either_theme_or_the_chosen_one(self):
        sign_up(self.page, self.live_server_url, "owner@example.com")  # the first person: an admin
        owner = User.objects.get(email="owner@example.com")
        conversation = conversation_with_every_kind_of_message(owner)
        persona = Persona.objects.create(owner=owner, name="Guide", system_prompt="Be a travel guide.")
        pages = {
            "home": "/",
            "conversation": f"/c/{conversation.pk}/",
            "hub": "/hub/",
            "privacy": "/settings/privacy/",
            "account-delete": "/settings/privacy/delete-account/",
            "profile": "/settings/profile/",
            "personas": "/personas/",
            "persona-new": "/personas/new/",
            "persona-edit": f"/personas/{persona.pk}/edit/",
            "plan": "/billing/",
            "policy": "/privacy/",
            "password-change": "/accounts/password/change/",
            "email": "/accounts/email/",
            "admin": "/admin/",
        }
        problems = self._sweep(pages)
        owner.theme = Theme.DARK
        owner.save(update_fields=["theme"])
        problems += self._sweep(pages, schemes=("light",), chosen_theme="dark", width=390)  # and on a phone
        assert not problems, "\n".join(problems)

    def test_the_theme_chosen_in_the_profile_is_kept_after_reload_and_on_another_device(self):
        page = self.page
        page.emulate_media(color_scheme="light")
        sign_up(page, self.live_server_url, "night@example.com")
        assert page_background(page) == BACKGROUND["light"], "System follows the device"

        page.goto(f"{self.live_server_url}/settings/profile/")
        page.get_by_role("group", name="Appearance").get_by_label("Dark").check()
        page.get_by_role("button", name="Save").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        assert page_background(page) == BACKGROUND["dark"]
        expect(page.get_by_role("status")).to_have_text("Your profile was saved.")
        assert not serious_problems(page), "the notice is readable too"
        screenshot(page, "a11y-1280-dark-chosen-profile-saved")
        page.reload()
        assert page_background(page) == BACKGROUND["dark"]
        assert page.get_by_label("Dark").is_checked()

        other_device = self.browser.new_context(color_scheme="light")
        self.addCleanup(other_device.close)
        elsewhere = other_device.new_page()
        sign_in(elsewhere, self.live_server_url, "night@example.com")
        assert page_background(elsewhere) == BACKGROUND["dark"], "the person's choice, not the device's"

        page.get_by_label("System").check()
        page.get_by_role("button", name="Save").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "system")
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            assert page_background(page) == BACKGROUND[scheme], f"System follows a {scheme} device"

    def test_a_visitor_gets_the_theme_of_their_device(self):
        for scheme in SCHEMES:
            self.page.emulate_media(color_scheme=scheme)
            self.page.goto(f"{self.live_server_url}/accounts/login/")
            assert page_background(self.page) == BACKGROUND[scheme]

    def test_a_reply_is_announced_once_it_ends_never_word_by_word(self):
        page = self.page
        sign_up(page, self.live_server_url, "listener@example.com")
        announcer = page.locator("#reply-announcer")
        live = ":is([aria-live], [role=status], [role=log], [role=alert])"
        inside_live_region = page.locator(f"{live}:has(#messages), #messages{live}, #messages {live}")
        assert inside_live_region.count() == 0, "the text as it streams is not read out"
        assert announcer.get_attribute("role") == "status"
        send_from_home(page, "Say hello.")
        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-streaming\b"), timeout=REPLY_TIMEOUT_MS)
        assert announcer.text_content() == "", "nothing is said while the reply is written"
        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        first_words = reply.locator(".message-body").inner_text().split()[:5]
        said = announcer.text_content()
        assert said.startswith("Reply finished: " + " ".join(first_words)), said

    def test_reduced_motion_stills_transitions(self):
        page = self.page
        sign_up(page, self.live_server_url, "still@example.com")
        conversation = conversation_with_every_kind_of_message(User.objects.get(email="still@example.com"))
        page.goto(f"{self.live_server_url}/c/{conversation.pk}/")
        actions = page.locator(".message-actions").first

        def transition() -> str:
            return actions.evaluate("el => getComputedStyle(el).transitionDuration")

        assert transition() == "0.15s"
        page.emulate_media(reduced_motion="reduce")
        assert transition() == "0.001s"

"""The Content-Security-Policy in Chromium: the pages work under it (the chat streams over
its socket, the hub, privacy and admin pages load their scripts and styles) and it blocks
what it should. Every browser test also fails on a violation (tests/browser/base.py)."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings
from playwright.sync_api import expect

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

PAGES = {
    "hub": "/hub/",
    "privacy": "/settings/privacy/",
    "profile": "/settings/profile/",
    "policy": "/privacy/",
    "admin": "/admin/",
    "admin-analytics": "/admin/analytics/",
    "admin-crash-reports": "/admin/accounts/crashreport/",
}
WIDTHS = (1280, 390)


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class ContentSecurityPolicyTests(BrowserTestCase):
    def test_the_chat_streams_and_every_page_loads_without_a_violation(self):
        page = self.page
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        sign_up(page, self.live_server_url, "owner@example.com")  # the first person: an admin

        send_from_home(page, "Say hello.")
        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        assert reply.locator(".message-body").text_content().strip()
        assert [url for url in sockets if "/ws/chat/" in url], f"the reply came without the socket: {sockets}"
        chat_path = page.url.removeprefix(self.live_server_url)

        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            for name, path in {"chat": chat_path, **PAGES}.items():
                page.goto(self.live_server_url + path)
                expect(page.locator("body")).to_be_visible()
                screenshot(page, f"csp-{name}-{width}")
        assert self.csp_violations == []

    def test_markup_the_policy_forbids_is_blocked_and_reported(self):
        """The check every browser test makes can fail: a style attribute and an inline
        handler put into the page are blocked, and reported."""
        page = self.page
        sign_up(page, self.live_server_url, "tester@example.com")
        page.evaluate(
            """() => {
              window.ran = false;
              document.body.insertAdjacentHTML(
                "beforeend", '<p id="probe" style="color: rgb(255, 0, 0)">probe</p>'
                  + '<img src="data:," onerror="window.ran = true">');
            }"""
        )
        self.wait_until(lambda: len(self.csp_violations) >= 2, what="the two violations to be reported")
        assert page.evaluate("window.ran") is False
        assert page.locator("#probe").evaluate("el => getComputedStyle(el).color") != "rgb(255, 0, 0)"
        directives = {violation.split(" ")[0] for violation in self.csp_violations}
        assert directives == {"script-src-attr", "style-src-attr"}, self.csp_violations
        self.csp_violations.clear()  # seen: the check after each test is for the unexpected

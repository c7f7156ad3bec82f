"""The installed app in Chromium: the manifest parses and the app can be installed; once the
service worker runs, a page the network can't bring opens as the offline page with the app's
own styles (offline, with the server stopped, behind a proxy whose instance is down); and no
conversation, no page and no answer of the server is ever in the worker's cache
(localai_site/app_shell.py)."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings
from playwright.sync_api import Page, expect

from .base import (
    CONVERSATION_URL,
    REPLY_TIMEOUT_MS,
    BrowserTestCase,
    last_reply,
    screenshot,
    send_from_home,
    sign_up,
)

pytestmark = pytest.mark.browser

OFFLINE_TEXT = "This instance can't be reached right now"
# Every entry of every cache of the page's origin, with its bytes read as text.
CACHED_ENTRIES_JS = """
async () => {
  const entries = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      const response = await cache.match(request);
      entries.push({cache: name, path: new URL(request.url).pathname, text: await response.text()});
    }
  }
  return entries;
}
"""
# The page's background, from --bg in static/css/app.css; without the stylesheet it is transparent.
LIGHT_BACKGROUND = "rgb(247, 247, 248)"
REPLY_TOKENS = 8  # a reply that ends soon on a busy machine: its words are what is looked for


def wait_for_the_worker_to_control(page: Page) -> None:
    page.wait_for_function(
        "navigator.serviceWorker.controller?.state === 'activated'", timeout=30_000, polling=100
    )


def expect_the_offline_page_with_its_styles(page: Page, styles_from_the_worker: list[bool]) -> None:
    expect(page.get_by_role("heading", name=OFFLINE_TEXT)).to_be_visible()
    expect(page.get_by_role("link", name="Try again")).to_be_visible()
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert background == LIGHT_BACKGROUND, "the app's stylesheet did not load"
    assert styles_from_the_worker == [True], "the stylesheet came from somewhere else than the worker's cache"


def stylesheet_sources(page: Page) -> list[bool]:
    """Whether each load of app.css from now on came from the service worker."""
    sources: list[bool] = []
    page.on(
        "response",
        lambda r: sources.append(r.from_service_worker) if r.url.endswith("/css/app.css") else None,
    )
    return sources


@override_settings(
    CHAT_MAX_TOKENS=REPLY_TOKENS, CHAT_TEMPERATURE=0, ROOT_URLCONF="tests.browser.urls_behind_a_proxy"
)
class InstallableAppTests(BrowserTestCase):
    def test_chromium_reads_the_manifest_without_errors_and_can_install_the_app(self):
        page = self.page
        sign_up(page, self.live_server_url, "owner@example.com")
        wait_for_the_worker_to_control(page)
        cdp = self.context.new_cdp_session(page)

        manifest = cdp.send("Page.getAppManifest")
        assert manifest["url"] == f"{self.live_server_url}/manifest.webmanifest"
        assert manifest["errors"] == []
        assert manifest["manifest"]["startUrl"] == f"{self.live_server_url}/"
        assert manifest["manifest"]["display"] == "kStandalone"

        errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        # Playwright's contexts are incognito, where Chromium installs nothing; it still lists
        # every other reason (a display mode it can't install, an icon it can't use) beside it.
        assert [error["errorId"] for error in errors if error["errorId"] != "in-incognito"] == []

    def test_offline_the_shell_opens_and_no_conversation_is_ever_kept(self):
        page = self.page
        sign_up(page, self.live_server_url, "owner@example.com")
        wait_for_the_worker_to_control(page)
        words = "Remember the code word pelican-4417, then say hello."
        send_from_home(page, words)
        expect(last_reply(page)).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        reply = last_reply(page).locator(".message-body").inner_text().strip()
        conversation = page.url
        conversation_id = CONVERSATION_URL.search(conversation).group(0).split("/")[2]
        for path in ("/", "/hub/", "/settings/privacy/", "/settings/profile/"):
            page.goto(self.live_server_url + path)  # pages through the worker, while online
        page.goto(conversation)
        expect(page.locator("article.message-user .message-body")).to_have_text(words)

        self.context.set_offline(True)
        styles = stylesheet_sources(page)
        page.goto(conversation)
        expect_the_offline_page_with_its_styles(page, styles)
        assert page.url == conversation  # "Try again" asks for the page that failed
        screenshot(page, "offline-1280")
        page.set_viewport_size({"width": 390, "height": 800})
        screenshot(page, "offline-390")

        names = page.evaluate("caches.keys()")
        assert len(names) == 1 and names[0].startswith("localai-shell-"), names
        entries = page.evaluate(CACHED_ENTRIES_JS)
        paths = {entry["path"] for entry in entries}
        assert {"/offline/", "/static/css/app.css"} <= paths
        assert [path for path in paths if path != "/offline/" and not path.startswith("/static/")] == []
        secrets = ["pelican-4417", conversation_id, "owner@example.com"]
        if len(reply) > 12:  # a word or two could be in a script by chance
            secrets.append(reply)
        for entry in entries:
            for secret in secrets:
                assert secret not in entry["text"], f"{secret!r} is kept in the cache, in {entry['path']}"

        self.context.set_offline(False)
        page.get_by_role("link", name="Try again").click()
        expect(page.locator("article.message-user .message-body")).to_have_text(words)

    def test_behind_a_proxy_whose_instance_is_down_the_offline_page_shows(self):
        page = self.page
        sign_up(page, self.live_server_url, "owner@example.com")
        wait_for_the_worker_to_control(page)
        styles = stylesheet_sources(page)
        page.goto(f"{self.live_server_url}/gateway-down/")  # a 502: tests/browser/urls_behind_a_proxy.py
        expect_the_offline_page_with_its_styles(page, styles)


class ServerStoppedTests(BrowserTestCase):
    def test_with_the_server_stopped_the_installed_app_opens_on_the_offline_page(self):
        page = self.page
        sign_up(page, self.live_server_url, "owner@example.com")
        wait_for_the_worker_to_control(page)
        self._server_process.terminate()  # its class has no other test: nothing else needs it
        self._server_process.join()

        styles = stylesheet_sources(page)
        page.goto(f"{self.live_server_url}/")  # the manifest's start_url: what the home screen opens
        expect_the_offline_page_with_its_styles(page, styles)

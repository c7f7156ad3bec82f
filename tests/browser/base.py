"""What every browser test stands on: the server and Chromium (`BrowserTestCase`), and the
steps a person takes in many tests (signing up, sending from the home page).

The app is served by daphne (``ChannelsLiveServerTestCase``: HTTP and websockets) in a
child process forked from the test's, so settings overridden on a class before the
server starts (``CHAT_MAX_TOKENS``) are the server's settings too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from asgiref.sync import SyncToAsync
from channels.testing import ChannelsLiveServerTestCase
from django.conf import settings
from playwright.sync_api import Locator, Page, sync_playwright

from accounts.selectors import admin_exists
from accounts.setup_token import setup_token_issue
from chat.models import ACTIVE_STATUSES, Message
from localai_site.core.queues import Queue
from localai_site.core.tasks import tasks_wait_idle
from models_hub.services import bundled_model_register
from tests.conftest import PASSWORD
from tests.waiting import Errors, wait_until

T = TypeVar("T")

# Debian's Chromium: Playwright cannot download its own here.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"

SHORT_MAX_TOKENS = 120  # replies that must finish: long enough to watch them grow
REPLY_TIMEOUT_MS = 120_000  # a whole long reply on a slow, busy machine
CONVERSATION_URL = re.compile(r"/c/[0-9a-f-]{36}/$")
# Runs in every page before its own scripts: tells the test what the Content-Security-Policy
# blocked (``self.csp_violations``).
REPORT_CSP_VIOLATIONS_JS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"} `
    + `at ${event.documentURI.replace(location.origin, "")}:${event.lineNumber}`);
});
"""


def sign_up(page: Page, base_url: str, email: str, *, analytics: bool = False) -> None:
    """The signup form as a person fills it in; they land on the home page. On an instance
    with no admin yet they come by the setup link ``localai serve`` printed, and are the admin."""
    setup = "" if admin_exists() else f"?setup={setup_token_issue()}"
    page.goto(f"{base_url}/accounts/signup/{setup}")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.check("input[name=minimum_age]")
    if analytics:
        page.check("input[name=analytics]")
    page.click("form[action='/accounts/signup/'] button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def send_from_home(page: Page, text: str) -> None:
    """Enter on the home page posts the form; the new conversation's page opens."""
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")
    page.wait_for_url(CONVERSATION_URL)


def nav_open(page: Page, name: str) -> None:
    """Follow a top-bar link, through the Menu on a phone (static/site/menu.js)."""
    menu = page.get_by_role("button", name="Menu")
    if menu.is_visible():
        menu.click()
    page.locator(".topnav").get_by_role("link", name=name).click()


def last_reply(page: Page) -> Locator:
    return page.locator("article.message-assistant").last


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=full_page)


def _fresh_thread_sensitive_executor() -> None:
    # The server is forked from the test process, which may have run thread-sensitive
    # database work already (a socket test): the child inherits asgiref's one-thread
    # executor without its thread, and every socket it opens would wait forever.
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


os.register_at_fork(after_in_child=_fresh_thread_sensitive_executor)


class BrowserTestCase(ChannelsLiveServerTestCase):
    """One daphne server and one Chromium per subclass, a fresh browser context per test.

    Subclasses set the server's settings with ``@override_settings``: applied in
    ``SimpleTestCase.setUpClass``, before the server process is forked, and the browser's
    window with ``device`` (Playwright's context options: a phone's size, touch).
    """

    device: ClassVar[dict[str, Any]] = {"viewport": {"width": 1280, "height": 800}}

    @classmethod
    def setUpClass(cls):
        # The server is forked from this process: a task thread still running here (a reply an
        # earlier, non-browser test left) would be copied mid-call, with the locks it held
        # taken for good in the server.
        for queue in Queue:
            tasks_wait_idle(queue, timeout=REPLY_TIMEOUT_MS / 1000)
        super().setUpClass()  # forks the daphne child, with the subclass's settings
        try:
            cls._allow_db_access_between_playwright_calls()
            cls.playwright = sync_playwright().start()
            cls.addClassCleanup(cls.playwright.stop)
            cls.browser = cls.playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *cls.chromium_extra_args()]
            )
            cls.addClassCleanup(cls.browser.close)
        except BaseException:
            super().tearDownClass()  # not called when setUpClass fails: stop the server
            raise

    @classmethod
    def chromium_extra_args(cls) -> list[str]:
        """More of Chromium's switches for this class's browser (a fake microphone's sound)."""
        return []

    @classmethod
    def _allow_db_access_between_playwright_calls(cls):
        """Playwright's sync API marks an event loop as running between its calls, which
        Django takes for async code and refuses DB access (even the flush after each test).

        Nothing async runs here, so allow it; only in this process: the server was
        forked before and keeps its checks.
        """
        before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

        def restore():
            if before is None:
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            else:
                os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before

        cls.addClassCleanup(restore)

    def setUp(self):
        bundled_model_register()  # the flush after each test removes it
        self.context = self.browser.new_context(**self.device)
        self.context.set_default_timeout(15_000)
        self.csp_violations: list[str] = []
        self.context.expose_function("reportCspViolation", lambda seen: self.csp_violations.append(seen))
        self.context.add_init_script(REPORT_CSP_VIOLATIONS_JS)
        self.page = self.context.new_page()

    def tearDown(self):
        self.context.close()
        # One model thread serves every test: a reply left running would delay the next.
        wait_until(
            lambda: not Message.objects.filter(status__in=ACTIVE_STATUSES).exists(),
            timeout=REPLY_TIMEOUT_MS / 1000,
            every=0.2,
            what="the replies this test left running to end",
        )
        # Every browser test is also a check of the policy: what it blocked is a broken page.
        assert self.csp_violations == [], "the Content-Security-Policy blocked parts of a page"

    def wait_until(
        self,
        predicate: Callable[[], T],
        *,
        what: str,
        timeout: float = 10,
        every: float = 0.05,
        ignoring: Errors = (),
    ) -> T:
        """``tests.waiting.wait_until``, pausing through Playwright: a plain sleep would
        hold back the page's events (websocket frames) the test is waiting for."""
        return wait_until(
            predicate,
            what=what,
            timeout=timeout,
            every=every,
            ignoring=ignoring,
            sleep=lambda seconds: self.page.wait_for_timeout(seconds * 1000),
        )

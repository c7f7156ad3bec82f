"""The app at a phone's, a tablet's and a desktop's width, in Chromium: no page scrolls
sideways, the chat's conversation list is a drawer on a phone, Send and Stop stay on
screen while a reply streams, and the keyboard shortcuts work (the server and Chromium:
tests/browser/base.py)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client, override_settings
from playwright.sync_api import Page, expect

from accounts.models import User
from chat.models import CloudModel, Conversation, Message, MessageStatus, Persona, Role
from models_hub.services import bundled_model_register
from tests.chat.conftest import make_cloud_provider
from tests.servers import MisbehavingProvider
from tests.test_every_url import routes

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

PHONE, SMALL_PHONE, TABLET, DESKTOP = 390, 360, 768, 1280
WIDTHS = [SMALL_PHONE, PHONE, TABLET, DESKTOP]
HEIGHT = {SMALL_PHONE: 740, PHONE: 844, TABLET: 1024, DESKTOP: 800}
A_PHONE = {"viewport": {"width": PHONE, "height": HEIGHT[PHONE]}, "is_mobile": True, "has_touch": True}
# What a reply may hold that is wider than any phone: a long line of code, a wide table, a
# word with no break.
WIDE_CODE = "```python\n" + "result = compute(" + ", ".join(f"argument_{i}" for i in range(40)) + ")\n```"
WIDE_TABLE = "\n".join(
    [
        "| " + " | ".join(f"column {i}" for i in range(16)) + " |",
        "|" + "---|" * 16,
        "| " + " | ".join(["cell"] * 16) + " |",
    ]
)
UNBROKEN = "x" * 400
LONG_PROMPT = "Write a very long story about a dragon."

# How much wider than the window the page is, and the elements that stick out the most.
OVERFLOW_JS = """
() => {
  const root = document.documentElement;
  const width = root.clientWidth;
  const wide = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > width + 0.5)
    .filter((el) => ![...el.children].some((child) => child.getBoundingClientRect().right > width + 0.5))
    .slice(0, 5)
    .map((el) => {
      const name = `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`;
      return `${name} ends at ${Math.round(el.getBoundingClientRect().right)}`;
    });
  return {scrollWidth: root.scrollWidth, clientWidth: width, wide};
}
"""


def sideways_overflow(page: Page) -> str | None:
    """None when the page fits its window; else how far it sticks out, and where."""
    seen = page.evaluate(OVERFLOW_JS)
    if seen["scrollWidth"] <= seen["clientWidth"]:
        return None
    return f"{seen['scrollWidth']} px wide in {seen['clientWidth']}: {'; '.join(seen['wide'])}"


def conversation_with(owner: User, title: str, reply: str) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner, model=bundled_model_register().model_id, title=title
    )
    Message.objects.create(conversation=conversation, role=Role.USER, content="Show me.")
    Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, content=reply, status=MessageStatus.DONE
    )
    return conversation


def pages_without_parameters(user: User | None) -> dict[str, str]:
    """Every page the app routes that needs no id and answers ``user`` (None: a visitor) with
    HTML, by a name for its screenshot: a page added tomorrow is swept too. The admin's inner
    pages are Django's own and left out."""
    # Asked from a thread of its own: Playwright's event loop runs in this one, and the test
    # client cannot call an async view (the API's) from a thread with a running loop.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(_pages_answering, user).result()


def _pages_answering(user: User | None) -> dict[str, str]:
    client = Client()
    if user is not None:
        client.force_login(user)
    pages = {}
    for route in routes():
        path = route.template
        if path.startswith("/admin/") or "<" in path or "(?P" in path:
            continue
        response = client.get(path)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            pages[path.strip("/").replace("/", "-") or "home"] = path
    return pages


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class NoSidewaysScrollingTests(BrowserTestCase):
    def _sweep(self, pages: dict[str, str]) -> list[str]:
        """Each page at each width: what scrolls sideways; a screenshot of each."""
        overflowing = []
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": HEIGHT[width]})
            for name, path in pages.items():
                self.page.goto(f"{self.live_server_url}{path}")
                self.page.wait_for_load_state("load")
                screenshot(self.page, f"responsive-{width}-{name}")
                if problem := sideways_overflow(self.page):
                    overflowing.append(f"{path} at {width} px: {problem}")
        return overflowing

    def test_no_page_scrolls_sideways_for_a_signed_in_admin(self):
        sign_up(self.page, self.live_server_url, "wide@example.com")
        owner = User.objects.get(email="wide@example.com")
        conversation = conversation_with(
            owner,
            "A title long enough to be cut short on a phone's narrow screen",
            f"{WIDE_CODE}\n\n{WIDE_TABLE}\n\n{UNBROKEN}",
        )
        persona = Persona.objects.create(owner=owner, name="Guide", system_prompt="Be a travel guide. " * 20)
        pages = pages_without_parameters(owner)
        assert {"/", "/hub/", "/billing/", "/settings/privacy/", "/personas/"} <= set(pages.values())
        pages |= {
            "conversation": f"/c/{conversation.pk}/",
            "persona-edit": f"/personas/{persona.pk}/edit/",
            "admin": "/admin/",
            "admin-analytics": "/admin/analytics/",
            "admin-operations": "/admin/operations/",
        }
        overflowing = self._sweep(pages)
        assert not overflowing, "pages that scroll sideways:\n" + "\n".join(overflowing)

    def test_no_page_scrolls_sideways_for_a_visitor(self):
        pages = pages_without_parameters(None)
        assert {"/accounts/login/", "/accounts/signup/", "/privacy/"} <= set(pages.values())
        overflowing = self._sweep(pages)
        assert not overflowing, "pages that scroll sideways:\n" + "\n".join(overflowing)


# Each element where it is: inside the window, and the one a tap at its centre reaches.
REACHABLE_JS = """
(selectors) => Object.fromEntries(selectors.map((selector) => {
  const el = document.querySelector(selector);
  const box = el.getBoundingClientRect();
  const inside = box.left >= 0 && box.top >= 0 && box.right <= innerWidth && box.bottom <= innerHeight;
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return [selector, inside && el.contains(hit) && !el.disabled];
}))
"""

# In the page: the widest the document was while the newest reply was written, and whether
# it was seen being written at all.
WIDEST_WHILE_STREAMING_JS = """
async () => {
  let widest = 0, streamed = false;
  for (let i = 0; i < 400; i++) {
    const el = [...document.querySelectorAll("article.message-assistant")].pop();
    const status = el?.dataset.status;
    streamed ||= status === "streaming";
    widest = Math.max(widest, document.documentElement.scrollWidth);
    if (status && status !== "queued" && status !== "streaming") break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {widest, streamed, width: document.documentElement.clientWidth};
}
"""

# Whether an element scrolls sideways inside itself: wider inside than it shows, and it moves.
SCROLLS_INSIDE_JS = """
(el) => {
  const wider = el.scrollWidth > el.clientWidth;
  el.scrollLeft = 120;
  return wider && el.scrollLeft > 0;
}
"""

# What has the keyboard's focus, and whether one can see it (an outline drawn around it).
FOCUSED_JS = """
() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {
    what: `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${[...el.classList].join(".")} `
      + (el.textContent || el.value || "").trim().slice(0, 30),
    visible: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0,
    inDrawer: Boolean(el.closest("#conversation-drawer")),
  };
}
"""


def swipe(page: Page, start: tuple[int, int], end: tuple[int, int]) -> None:
    """A finger across the screen: touch events as a touch screen sends them."""
    cdp = page.context.new_cdp_session(page)
    steps = 6
    cdp.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": start[0], "y": start[1]}]}
    )
    for step in range(1, steps + 1):
        x = start[0] + (end[0] - start[0]) * step / steps
        y = start[1] + (end[1] - start[1]) * step / steps
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def frames_received(page: Page) -> list[str | bytes]:
    """What the page's sockets receive, from now on: the first says the chat is connected."""
    frames: list[str | bytes] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda payload: frames.append(payload)))
    return frames


def tab_through(page: Page, until: str, most: int = 60) -> list[dict]:
    """Tab from the top of the page until ``until`` (a selector) has the focus: what had it."""
    page.locator(".topbar").click(position={"x": 2, "y": 2})  # Tab goes on from where one clicked
    seen = []
    for _ in range(most):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED_JS))
        if page.evaluate("(selector) => document.activeElement.matches(selector)", until):
            return seen
    raise AssertionError(f"Tab never reached {until}; it went through: {[f['what'] for f in seen]}")


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class PhoneChatTests(BrowserTestCase):
    device = A_PHONE

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.echo_server = MisbehavingProvider(interval=0.5)
        cls.addClassCleanup(cls.echo_server.stop)

    def test_the_conversation_list_is_a_drawer_that_opens_closes_and_opens_a_conversation(self):
        page = self.page
        sign_up(page, self.live_server_url, "drawer@example.com")
        owner = User.objects.get(email="drawer@example.com")
        packing = conversation_with(owner, "Packing list", "Socks and a map.")
        dinner = conversation_with(owner, "Dinner ideas", "Lentil soup.")
        page.goto(f"{self.live_server_url}/c/{packing.pk}/")
        drawer = page.locator("#conversation-drawer")
        toggle = page.locator(".drawer-toggle")
        expect(drawer).to_be_hidden()
        expect(toggle).to_have_attribute("aria-controls", "conversation-drawer")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(page.locator("#messages")).to_be_in_viewport()

        toggle.tap()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(drawer).to_be_in_viewport(ratio=1)
        assert page.evaluate(FOCUSED_JS)["inDrawer"], "opening the drawer left the focus outside it"
        assert sideways_overflow(page) is None
        screenshot(page, "phone-drawer-open")
        page.keyboard.press("Escape")
        expect(drawer).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(toggle).to_be_focused()

        toggle.tap()
        expect(drawer).to_be_in_viewport(ratio=1)
        page.touchscreen.tap(PHONE - 20, 500)  # beside the drawer, on the chat it covers
        expect(drawer).to_be_hidden()
        expect(toggle).to_be_focused()

        toggle.tap()
        expect(drawer).to_be_in_viewport(ratio=1)
        swipe(page, (250, 400), (40, 410))
        expect(drawer).to_be_hidden()

        page.keyboard.press("Control+k")  # a tablet's keyboard: search opens the drawer
        expect(drawer).to_be_in_viewport(ratio=1)
        expect(page.locator("#search-input")).to_be_focused()

        drawer.get_by_role("link", name=re.compile("Dinner ideas")).tap()
        page.wait_for_url(f"{self.live_server_url}/c/{dinner.pk}/")
        expect(page.locator("#title-input")).to_have_value("Dinner ideas")
        expect(drawer).to_be_hidden()
        expect(page.locator(".drawer-toggle")).to_have_attribute("aria-expanded", "false")

    def test_the_top_bar_folds_its_links_behind_menu_and_the_menu_takes_you_there(self):
        page = self.page
        sign_up(page, self.live_server_url, "menu@example.com")
        menu = page.get_by_role("button", name="Menu")
        images = page.locator(".topnav").get_by_role("link", name="Images")
        expect(images).to_be_hidden()
        bar = page.locator(".topbar").bounding_box()
        assert bar is not None and bar["height"] < 64, f"the bar takes {bar} on a phone"
        menu.tap()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(images).to_be_in_viewport(ratio=1)
        assert sideways_overflow(page) is None
        screenshot(page, "phone-menu-open")
        page.keyboard.press("Escape")
        expect(images).to_be_hidden()
        expect(menu).to_be_focused()
        menu.tap()
        page.touchscreen.tap(100, 500)  # anywhere else closes it
        expect(images).to_be_hidden()
        menu.tap()
        images.tap()
        page.wait_for_url(f"{self.live_server_url}/images/")
        expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")

    def test_send_and_stop_stay_on_screen_and_work_while_a_reply_streams(self):
        page = self.page
        sign_up(page, self.live_server_url, "thumbs@example.com")
        frames = frames_received(page)
        send_from_home(page, LONG_PROMPT)
        stop = page.locator("#stop-button")
        expect(stop).to_be_visible(timeout=REPLY_TIMEOUT_MS)
        self.wait_until(lambda: frames, what="the chat socket to connect", timeout=30)
        reachable = page.evaluate(REACHABLE_JS, ["#composer-input", "#send-button", "#stop-button"])
        assert all(reachable.values()), f"out of reach while the reply streams: {reachable}"
        assert sideways_overflow(page) is None
        screenshot(page, "phone-streaming")
        stop.tap()
        # The model sees the request between two tokens: on a busy machine they come slowly.
        expect(last_reply(page)).to_have_class(re.compile(r"\bstatus-stopped\b"), timeout=REPLY_TIMEOUT_MS)
        expect(stop).to_be_hidden()

        page.fill("#composer-input", LONG_PROMPT)
        page.locator("#send-button").tap()
        expect(page.locator("article.message-user")).to_have_count(2)
        expect(page.locator("article.message-assistant")).to_have_count(2)
        expect(stop).to_be_visible(timeout=REPLY_TIMEOUT_MS)
        assert all(page.evaluate(REACHABLE_JS, ["#send-button", "#stop-button"]).values())
        stop.tap()
        expect(last_reply(page)).to_have_class(re.compile(r"\bstatus-stopped\b"), timeout=REPLY_TIMEOUT_MS)

    def test_a_long_code_block_and_table_in_a_reply_scroll_inside_themselves(self):
        page = self.page
        make_cloud_provider("echoer", self.echo_server.base_url, "sk-test-echo-123456", "echo")
        echo = CloudModel.objects.get()
        sign_up(page, self.live_server_url, "coder@example.com")
        expect(page.locator("#model-select")).to_be_hidden()  # folded behind one button
        options = page.locator(".options-toggle")
        options.tap()
        expect(options).to_have_attribute("aria-expanded", "true")
        page.select_option("#model-select", echo.model_id)
        page.select_option("#persona-select", label="No persona")
        expect(page.locator(".options-summary")).to_contain_text("echo")
        send_from_home(page, f"{WIDE_CODE}\n\n{WIDE_TABLE}\n\n{UNBROKEN}")

        seen = page.evaluate(WIDEST_WHILE_STREAMING_JS)
        assert seen["streamed"], "the reply was not seen while it was written"
        assert seen["widest"] <= seen["width"], f"the page widened while the reply streamed: {seen}"
        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        for wide in (reply.locator("pre"), reply.locator("table")):
            wide.scroll_into_view_if_needed()
            assert wide.evaluate(SCROLLS_INSIDE_JS), "a wide block does not scroll inside itself"
            box = wide.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE
        assert sideways_overflow(page) is None
        screenshot(page, "phone-wide-reply")

    def test_the_keyboard_reaches_every_control_and_shows_where_it_is(self):
        page = self.page
        sign_up(page, self.live_server_url, "tabber@example.com")
        conversation = conversation_with(User.objects.get(email="tabber@example.com"), "Tabs", "Spaces.")
        page.goto(f"{self.live_server_url}/c/{conversation.pk}/")
        seen = tab_through(page, until=".options-toggle")
        reached = " | ".join(f["what"] for f in seen)
        for control in (".drawer-toggle", "#title-input", "#composer-input", "#send-button"):
            assert control.lstrip(".#") in reached, f"Tab did not reach {control}: {reached}"
        assert not [f for f in seen if not f["visible"]], f"focus without an outline: {seen}"
        assert not [f for f in seen if f["inDrawer"]], "Tab went into the closed drawer"

        page.keyboard.press("Enter")
        expect(page.locator("#model-select")).to_be_focused()
        page.locator(".drawer-toggle").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#conversation-drawer")).to_be_in_viewport(ratio=1)
        assert page.evaluate(FOCUSED_JS)["visible"]


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class KeyboardShortcutTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.paced_server = MisbehavingProvider(interval=0.3, tokens=80)  # a reply of 24 s
        cls.addClassCleanup(cls.paced_server.stop)

    def _open_conversation(self, email: str) -> Conversation:
        sign_up(self.page, self.live_server_url, email)
        conversation = conversation_with(User.objects.get(email=email), "Shortcuts", "At your service.")
        self.page.goto(f"{self.live_server_url}/c/{conversation.pk}/")
        return conversation

    def test_question_mark_or_its_button_opens_the_help_sheet_and_esc_closes_it(self):
        page = self.page
        self._open_conversation("helpful@example.com")
        help_sheet = page.locator("#shortcuts-help")
        expect(page.locator("#composer-input")).to_be_focused()  # the page opens ready to write
        page.keyboard.type("?")  # in the message box it is just a character
        expect(page.locator("#composer-input")).to_have_value("?")
        expect(help_sheet).to_be_hidden()

        page.locator("#messages").click()  # out of the text field
        page.keyboard.press("?")
        expect(help_sheet).to_be_visible()
        expect(help_sheet.locator("dd")).to_contain_text(
            ["New chat", "Search conversations", "Go to the message box", "Stop the reply being written"]
        )
        expect(help_sheet.locator("dt").first).to_have_text("Ctrl + Shift + O")
        screenshot(page, "shortcuts-help")
        page.keyboard.press("Escape")
        expect(help_sheet).to_be_hidden()

        button = page.get_by_role("button", name="Keyboard shortcuts")
        button.click()
        expect(help_sheet).to_be_visible()
        help_sheet.get_by_role("button", name="Close").click()
        expect(help_sheet).to_be_hidden()
        expect(button).to_be_focused()

    def test_shortcuts_search_go_to_the_message_box_and_start_a_new_chat(self):
        page = self.page
        self._open_conversation("quick@example.com")
        page.keyboard.press("Control+k")
        expect(page.locator("#search-input")).to_be_focused()
        page.keyboard.press("Shift+Escape")
        expect(page.locator("#composer-input")).to_be_focused()
        page.keyboard.press("Control+Shift+O")
        page.wait_for_url(f"{self.live_server_url}/")
        expect(page.locator("h1.chat-title")).to_have_text("New chat")

    def test_esc_stops_the_reply_being_written(self):
        page = self.page
        make_cloud_provider("pacer", self.paced_server.base_url, "sk-test-paced-123456", "paced")
        sign_up(page, self.live_server_url, "hasty@example.com")
        page.select_option("#model-select", CloudModel.objects.get().model_id)
        frames = frames_received(page)
        send_from_home(page, "Count slowly.")
        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-streaming\b"))
        self.wait_until(lambda: frames, what="the chat socket to connect", timeout=30)
        page.keyboard.press("Escape")
        # Seen between two tokens: the first can take seconds (connecting to the provider).
        expect(reply).to_have_class(re.compile(r"\bstatus-stopped\b"), timeout=REPLY_TIMEOUT_MS)
        expect(page.locator("#stop-button")).to_be_hidden()
        assert Message.objects.get(role=Role.ASSISTANT).status == MessageStatus.STOPPED

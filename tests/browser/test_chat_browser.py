"""What a person sees in the chat page, in a real browser, with replies from the real model
(the server and Chromium: tests/browser/base.py)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import override_settings
from playwright.sync_api import Locator, Page, expect

from accounts.models import User
from chat.models import Conversation, Message, MessageStatus, Role
from models_hub.services import bundled_model_register

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

LONG_MAX_TOKENS = 400  # replies to stop or reload in the middle of
LONG_PROMPT = "Write a very long story about a dragon."
STATS = re.compile(r"^\d+ tokens · [\d.]+ tok/s")

# In the page: read the newest reply every `ms` until it is no longer being written.
# Status and text are read together, so each sample is consistent.
SAMPLE_REPLY_JS = """
async ({count, ms}) => {
  const samples = [];
  for (let i = 0; i < count; i++) {
    const el = [...document.querySelectorAll("article.message-assistant")].pop();
    const status = el.dataset.status;
    samples.push({status, length: el.querySelector(".message-body").textContent.length});
    if (status !== "queued" && status !== "streaming") break;
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
  return samples;
}
"""


# Runs in the page before its own scripts: keeps what the server's HTML showed of the
# newest reply, before the chat socket could add anything to it.
RECORD_FIRST_PAINT_JS = """
document.addEventListener("readystatechange", () => {
  if (document.readyState !== "interactive") return;
  const el = [...document.querySelectorAll("article.message-assistant")].pop();
  window.firstPaintReply = el && {
    status: el.dataset.status, text: el.querySelector(".message-body").textContent,
  };
});
"""


def wait_for_reply_text(page: Page, min_length: int = 1) -> None:
    """Until the newest reply shows `min_length` characters while being written.

    Also returns when the reply ends first, so that a reply that never showed its text
    while streaming fails here at once rather than after a timeout.
    """
    handle = page.wait_for_function(
        """(min) => {
          const el = [...document.querySelectorAll("article.message-assistant")].pop();
          if (!el) return false;
          const status = el.dataset.status;
          const length = el.querySelector(".message-body").textContent.length;
          if (status === "streaming" && length >= min) return "streaming";
          return status !== "queued" && status !== "streaming" && `ended as ${status}`;
        }""",
        arg=min_length,
        timeout=REPLY_TIMEOUT_MS,
    )
    seen = handle.json_value()
    assert seen == "streaming", f"no text was shown while the reply was written: it {seen}"


def reload_and_read_first_paint(page: Page) -> dict:
    """Reload; the newest reply's status and text as the server's HTML showed them."""
    page.add_init_script(RECORD_FIRST_PAINT_JS)
    page.reload(wait_until="domcontentloaded")
    return page.evaluate("window.firstPaintReply")


def is_send_frame(payload: str | bytes) -> bool:
    return isinstance(payload, str) and json.loads(payload).get("type") == "send"


def reply_text(reply: Locator) -> str:
    """The reply's own text: finished replies show it rendered from Markdown and keep the
    source in ``data-text``; while streaming, the body shows it as it is."""
    return reply.get_attribute("data-text") or reply.locator(".message-body").text_content()


def reply_in_db(reply: Locator) -> Message:
    return Message.objects.get(pk=int(reply.get_attribute("data-message-id")))


def conversation_with_one_exchange(email: str) -> Conversation:
    owner = User.objects.get(email=email)
    model = bundled_model_register()
    conversation = Conversation.objects.create(owner=owner, model=model.model_id, title="Greetings")
    Message.objects.create(conversation=conversation, role=Role.USER, content="Hi!")
    Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, content="Hello! How can I help?", status="done"
    )
    return conversation


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class ChatPageTests(BrowserTestCase):
    def test_first_user_is_admin_and_sees_reply_stream_in_then_finish_with_stats(self):
        page = self.page
        sign_up(page, self.live_server_url, "first@example.com")
        expect(page.locator(".topnav a", has_text="Admin")).to_be_visible()

        send_from_home(page, "Tell me about the moon.")
        expect(page.locator("article.message-user .message-body")).to_have_text("Tell me about the moon.")
        wait_for_reply_text(page)
        samples = page.evaluate(SAMPLE_REPLY_JS, {"count": 20, "ms": 60})
        screenshot(page, "chat-streaming")

        streaming = [s["length"] for s in samples if s["status"] == "streaming"]
        assert len(streaming) >= 3, f"too few samples while streaming: {samples}"
        assert streaming == sorted(streaming), f"the text shrank: {samples}"
        assert len(set(streaming)) >= 3, f"the text did not grow on screen: {samples}"

        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        assert reply.locator(".message-body").text_content().strip()
        expect(reply.locator(".meta-stats")).to_have_text(STATS)
        # The story outgrows the server's limit (this class's override): it is cut there.
        expect(reply.locator(".meta-stats")).to_contain_text(f"{SHORT_MAX_TOKENS} tokens")
        expect(page.locator("#stop-button")).to_be_hidden()
        screenshot(page, "chat-done")

    def test_enter_sends_over_the_socket_and_shift_enter_adds_a_newline(self):
        page = self.page
        sign_up(page, self.live_server_url, "typist@example.com")
        conversation = conversation_with_one_exchange("typist@example.com")
        sent_frames: list[str] = []
        received_frames: list[str] = []

        def watch(ws):
            ws.on("framesent", lambda payload: sent_frames.append(payload))
            ws.on("framereceived", lambda payload: received_frames.append(payload))

        page.on("websocket", watch)
        page.goto(f"{self.live_server_url}/c/{conversation.pk}/")
        # The socket answers its opening sync: from then on Enter can send.
        self.wait_until(lambda: received_frames, what="the chat socket's first frame", timeout=30)
        expect(page.locator("article.message-user")).to_have_count(1)

        composer = page.locator("#composer-input")
        composer.click()
        composer.press_sequentially("Say hello.")
        composer.press("Shift+Enter")
        composer.press_sequentially("Answer in one short sentence.")
        expect(composer).to_have_value("Say hello.\nAnswer in one short sentence.")
        assert not [f for f in sent_frames if is_send_frame(f)], "Shift+Enter sent the message"

        composer.press("Enter")
        expect(composer).to_have_value("")
        # The form would redirect back to this same page: only the frame tells the paths apart.
        self.wait_until(
            lambda: [f for f in sent_frames if is_send_frame(f)], what="Enter to send a socket frame"
        )
        users = page.locator("article.message-user")
        expect(users).to_have_count(2)
        expect(users.last.locator(".message-body")).to_have_text("Say hello.\nAnswer in one short sentence.")
        replies = page.locator("article.message-assistant")
        expect(replies).to_have_count(2)
        expect(replies.last).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        assert replies.last.locator(".message-body").text_content().strip()
        assert Message.objects.filter(conversation=conversation, role=Role.USER).count() == 2
        assert page.url.endswith(f"/c/{conversation.pk}/"), "sending left the page"

    def test_signed_out_visitor_is_sent_to_sign_in(self):
        page = self.page
        page.goto(f"{self.live_server_url}/")
        assert page.url == f"{self.live_server_url}/accounts/login/?next=/"
        expect(page.locator("input[name=password]")).to_be_visible()
        expect(page.locator("#composer-input")).to_have_count(0)


@override_settings(CHAT_MAX_TOKENS=LONG_MAX_TOKENS, CHAT_TEMPERATURE=0)
class LongReplyTests(BrowserTestCase):
    def test_stop_keeps_the_text_so_far_and_ends_the_reply(self):
        page = self.page
        sign_up(page, self.live_server_url, "stopper@example.com")
        send_from_home(page, LONG_PROMPT)
        wait_for_reply_text(page, min_length=40)

        page.click("#stop-button")
        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-stopped\b"))
        expect(page.locator("#stop-button")).to_be_hidden()
        shown = reply_text(reply)
        assert shown.strip()
        page.wait_for_timeout(1000)  # would a stopped reply keep growing?
        assert reply_text(reply) == shown
        screenshot(page, "chat-stopped")

        saved = reply_in_db(reply)
        assert saved.status == MessageStatus.STOPPED
        assert saved.content == shown
        assert saved.completion_tokens < LONG_MAX_TOKENS

    def test_reload_mid_reply_shows_text_so_far_and_finishes_without_loss_or_doubling(self):
        page = self.page
        sign_up(page, self.live_server_url, "reloader@example.com")
        send_from_home(page, LONG_PROMPT)
        wait_for_reply_text(page)
        # The page is rendered from the database: wait for the first periodic save
        # (CHAT_SAVE_INTERVAL_MS) of the reply, which comes while it streams.
        reply_id = int(last_reply(page).get_attribute("data-message-id"))
        self.wait_until(
            lambda: Message.objects.filter(pk=reply_id).exclude(content="").exists(),
            what="the first save of the streaming reply",
        )

        first_paint = reload_and_read_first_paint(page)
        assert first_paint["status"] == "streaming", "the reply ended before the reload"
        at_reload = first_paint["text"]
        assert at_reload.strip(), "the page came back without the text written so far"
        reply = last_reply(page)

        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        final = reply_text(reply)
        saved = reply_in_db(reply)
        assert final == saved.content
        assert final.startswith(at_reload)
        assert len(final) > len(at_reload)
        # The server ran with this class's settings: the story is cut at its limit.
        assert saved.completion_tokens == LONG_MAX_TOKENS

    def test_reload_in_the_first_second_of_a_reply_shows_its_first_words(self):
        page = self.page
        sign_up(page, self.live_server_url, "quick-reloader@example.com")
        send_from_home(page, LONG_PROMPT)
        wait_for_reply_text(page)  # the first words are on screen, the first save is ~1 s away

        first_paint = reload_and_read_first_paint(page)
        # The socket catches up; then stop the story so that the next test need not wait for it.
        wait_for_reply_text(page)
        page.click("#stop-button")
        expect(last_reply(page)).to_have_class(re.compile(r"\bstatus-stopped\b"))

        assert first_paint["status"] == "streaming", "the reply ended before the reload"
        assert first_paint["text"].strip(), "the page came back without the words written so far"

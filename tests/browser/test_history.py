"""Long conversations in the browser: newest first, older ones as you scroll back."""

import pytest
from django.test import override_settings

from accounts.models import User
from chat.models import Conversation, Message, MessageStatus, Role
from models_hub.services import bundled_model_register

from .base import SHORT_MAX_TOKENS, BrowserTestCase, sign_up

pytestmark = pytest.mark.browser


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS)
class HistoryTests(BrowserTestCase):
    def test_scrolling_back_loads_older_messages_in_order(self):
        page = self.page
        sign_up(page, self.live_server_url, "historian@example.com")
        conversation = Conversation.objects.create(
            owner=User.objects.get(email="historian@example.com"),
            model=bundled_model_register().model_id,
            title="A long one",
        )
        Message.objects.bulk_create(
            Message(
                conversation=conversation,
                role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
                content=f"message number {i}",
                status=MessageStatus.DONE,
            )
            for i in range(130)
        )
        page.goto(f"{self.live_server_url}/c/{conversation.pk}/")
        bodies = page.locator(".message .message-body")
        assert bodies.count() == 50
        assert bodies.last.inner_text() == "message number 129"
        for expected in (100, 150):  # two pages further back, then the last 30
            page.locator("#messages").evaluate("el => el.scrollTop = 0")
            # A function, not an expression: Playwright would eval that, which the page's CSP forbids.
            page.wait_for_function(
                "(n) => document.querySelectorAll('.message').length >= n", arg=min(expected, 130)
            )
        texts = [text.strip() for text in bodies.all_inner_texts()]
        assert texts == [f"message number {i}" for i in range(130)]
        assert page.locator(".older-sentinel").count() == 0

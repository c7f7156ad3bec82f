"""What the page shows about where words go, and that model output cannot run as code."""

import pytest
from django.test import override_settings

from chat.models import CloudModel, Message
from tests.chat.conftest import make_cloud_provider
from tests.servers import MisbehavingProvider

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

HOSTILE = (
    '<img src=x onerror="window.__pwned = 1"> <script>window.__pwned = 2</script> '
    "[click me](javascript:window.__pwned=3) **bold** "
)


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class PrivacyAndRenderingTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.echo_server = MisbehavingProvider()
        cls.addClassCleanup(cls.echo_server.stop)

    def setUp(self):
        super().setUp()
        make_cloud_provider("echoer", self.echo_server.base_url, "sk-test-echo-123456", "echo")
        self.cloud_model_id = CloudModel.objects.get().model_id

    def _pick(self, model_id):
        self.page.select_option("#model-select", model_id)

    def test_model_output_with_markup_is_shown_never_run(self):
        page = self.page
        sign_up(page, self.live_server_url, "careful@example.com")
        self._pick(self.cloud_model_id)
        send_from_home(page, HOSTILE + "\n\n```\nprint('hi')\n```")
        reply = last_reply(page)
        reply.locator(".message-body.markdown").wait_for(timeout=REPLY_TIMEOUT_MS)
        body = reply.locator(".message-body")
        assert page.evaluate("window.__pwned") is None
        assert body.locator("img, script").count() == 0
        assert body.locator("a[href^='javascript']").count() == 0
        assert body.locator("strong").inner_text() == "bold"
        assert "<img src=x" in body.inner_text()  # the markup is shown as text
        assert body.locator("pre .code-copy").inner_text() == "Copy code"
        page.reload()  # the server-rendered page is just as safe
        last_reply(page).locator(".message-body.markdown").wait_for()
        assert page.evaluate("window.__pwned") is None
        assert last_reply(page).locator("img, script").count() == 0
        screenshot(page, "chat-markdown")

    def test_the_picker_says_before_sending_where_the_words_go(self):
        page = self.page
        sign_up(page, self.live_server_url, "picker@example.com")
        assert page.locator("#destination").inner_text() == "Stays on this instance"
        self._pick(self.cloud_model_id)
        assert page.locator("#destination").inner_text() == "Will be sent to Echoer"
        groups = page.locator("#model-select optgroup")
        assert groups.nth(0).get_attribute("label").startswith("Local")
        assert groups.nth(1).get_attribute("label").startswith("Cloud")

    def test_a_local_conversation_offers_a_new_cloud_chat_instead_of_switching(self):
        page = self.page
        sign_up(page, self.live_server_url, "local@example.com")
        send_from_home(page, "Keep this between us.")
        last_reply(page).locator(".message-body.markdown").wait_for(timeout=REPLY_TIMEOUT_MS)
        local_url = page.url
        self._pick(self.cloud_model_id)
        page.fill("#composer-input", "Now tell the cloud.")
        page.keyboard.press("Enter")
        offer = page.get_by_role("link", name="Start a new cloud chat")
        offer.wait_for()
        assert "stays on this instance" in page.locator("#composer-status").inner_text()
        assert not Message.objects.exclude(provider="local").exists()
        offer.click()
        page.wait_for_url(f"{self.live_server_url}/?model=*")
        assert page.locator("#model-select").input_value() == self.cloud_model_id
        assert page.url != local_url

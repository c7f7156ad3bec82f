"""Attaching files in the composer: by the attach button and by paste, a chip for each with
its thumbnail, then the images in the conversation and, as data URLs, in what the cloud model
that sees images received."""

import base64
from io import BytesIO

import pytest
from django.template.defaultfilters import filesizeformat
from django.test import override_settings
from PIL import Image

from chat.models import CloudModel, Upload
from tests.chat.conftest import make_cloud_provider
from tests.files import pdf_document
from tests.servers import MisbehavingProvider

from .base import REPLY_TIMEOUT_MS, SHORT_MAX_TOKENS, BrowserTestCase, screenshot, send_from_home, sign_up

pytestmark = pytest.mark.browser


def photo(colour: str) -> bytes:
    """A picture the size of a small photo (the 8 px samples would show as dots)."""
    gradient = Image.linear_gradient("L").resize((320, 200)).convert("RGB")
    out = BytesIO()
    Image.blend(gradient, Image.new("RGB", (320, 200), colour), 0.6).save(out, "PNG")
    return out.getvalue()


def settled(page) -> None:
    """Wait for the layout's transitions (the drawer's, after a resize) before a screenshot."""
    page.evaluate("Promise.all(document.getAnimations().map((animation) => animation.finished))")


# What a browser does when an image is pasted into the message box (Playwright's clipboard
# needs permissions headless Chromium does not grant).
PASTE_IMAGE_JS = """(box, data) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const clipboard = new DataTransfer();
  clipboard.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
  const paste = new ClipboardEvent("paste", { clipboardData: clipboard, bubbles: true, cancelable: true });
  box.dispatchEvent(paste);
}"""

DROP_PDF_JS = """(composer, data) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const dragged = new DataTransfer();
  dragged.items.add(new File([bytes], "plan.pdf", { type: "application/pdf" }));
  for (const type of ["dragover", "drop"]) {
    composer.dispatchEvent(new DragEvent(type, { dataTransfer: dragged, bubbles: true, cancelable: true }));
  }
}"""


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS)
class AttachmentTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vision_server = MisbehavingProvider()
        cls.addClassCleanup(cls.vision_server.stop)

    def setUp(self):
        super().setUp()
        make_cloud_provider("seer", self.vision_server.base_url, "sk-test-seer-123456", "echo")
        CloudModel.objects.update(sees_images=True, label="Echo Vision")
        self.model_id = CloudModel.objects.get().model_id
        self.vision_server.requests.clear()

    def _reply_done(self, index: int) -> None:
        reply = self.page.locator("article.message-assistant").nth(index)
        reply.locator(".message-body.markdown").wait_for(timeout=REPLY_TIMEOUT_MS)

    def test_images_attached_by_button_and_by_paste_show_as_chips_then_in_the_chat(self):
        page = self.page
        sign_up(page, self.live_server_url, "looker@example.com")
        page.select_option("#model-select", self.model_id)
        with page.expect_file_chooser() as chooser:
            page.click("#attach-button")
        chooser.value.set_files(
            files=[{"name": "teal.png", "mimeType": "image/png", "buffer": photo("teal")}]
        )
        chip = page.locator(".attachment-chip")
        chip.locator(".chip-thumb").wait_for()  # stored: its thumbnail is the stored copy
        assert chip.locator(".chip-name").inner_text() == "teal.png"
        assert chip.locator(".chip-size").inner_text() == filesizeformat(Upload.objects.get().size)
        assert chip.get_by_role("button", name="Remove teal.png").is_visible()
        screenshot(page, "attachments-chip-1280")

        send_from_home(page, "What colour is this?")
        first = page.locator("article.message-user").first.locator(".attachment-image img")
        first.wait_for()
        assert first.evaluate("img => img.naturalWidth") == 320 and first.get_attribute("alt") == "teal.png"
        self._reply_done(0)

        page.locator("#composer-input").evaluate(PASTE_IMAGE_JS, base64.b64encode(photo("orange")).decode())
        page.locator(".attachment-chip .chip-thumb").wait_for()
        assert page.locator(".attachment-chip .chip-name").inner_text() == "pasted.png"
        page.fill("#composer-input", "And this one?")
        page.press("#composer-input", "Enter")
        page.locator("article.message-user").nth(1).locator(".attachment-image img").wait_for()
        assert page.locator(".attachment-chip").count() == 0, "the chips went with the message"
        self._reply_done(1)

        sent = self.vision_server.requests[-1]["messages"]
        images = [part["image_url"]["url"] for turn in sent if isinstance(turn["content"], list)
                  for part in turn["content"] if part["type"] == "image_url"]  # fmt: skip
        assert len(images) == 2 and all(url.startswith("data:image/png;base64,") for url in images)
        assert Upload.objects.filter(deliveries__provider="seer", message__isnull=False).count() == 2

        with page.context.expect_page() as opened:  # full size, on its own
            page.locator(".attachment-image").first.click()
        assert opened.value.url.endswith("/image/")
        opened.value.wait_for_load_state()
        assert opened.value.evaluate("document.images[0].naturalWidth") == 320
        opened.value.close()
        screenshot(page, "attachments-chat-1280")
        page.set_viewport_size({"width": 390, "height": 844})
        settled(page)
        screenshot(page, "attachments-chat-390")

    def test_a_file_that_cannot_be_stored_says_why_and_holds_the_message(self):
        page = self.page
        sign_up(page, self.live_server_url, "mistaken@example.com")
        page.set_input_files(
            "#attach-input",
            files=[
                {"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00binary"}
            ],
        )
        error = page.locator(".attachment-chip .chip-error")
        error.wait_for()
        assert "“tool.exe” is not a file we can take" in error.inner_text()
        page.fill("#composer-input", "Send it anyway")
        page.press("#composer-input", "Enter")
        assert "could not be stored" in page.locator("#composer-status").inner_text()
        assert page.url == f"{self.live_server_url}/", "nothing was sent"
        page.set_viewport_size({"width": 390, "height": 844})
        settled(page)
        screenshot(page, "attachments-refused-390")
        page.get_by_role("button", name="Remove tool.exe").click()
        assert page.locator(".attachment-chip").count() == 0
        send_from_home(page, "Without it, then")

    def test_a_pdf_dropped_on_the_composer_is_read_by_the_model(self):
        page = self.page
        sign_up(page, self.live_server_url, "reader@example.com")
        page.select_option("#model-select", self.model_id)
        pdf = pdf_document(["The launch is on the ninth of May."])
        page.locator(".composer").evaluate(DROP_PDF_JS, base64.b64encode(pdf).decode())
        page.locator(".attachment-chip input[name=uploads]").wait_for(state="attached")
        self.wait_until(lambda: Upload.objects.filter(text_status="read").exists(), what="the PDF read")
        send_from_home(page, "When is the launch?")
        card = page.locator("article.message-user .attachment-card")
        card.wait_for()
        assert "plan.pdf" in card.inner_text() and "1 page" in card.inner_text()
        self._reply_done(0)
        sent = self.vision_server.requests[-1]["messages"][-1]["content"]
        assert "--- Page 1 ---\nThe launch is on the ninth of May." in sent

"""The image gallery in Chromium, against our loopback image provider: generate and watch it
being made, edit with a mask painted on the canvas (brush, eraser, undo), see the version,
use an image in a chat, delete; the same at a phone's width."""

from io import BytesIO

import pytest
from playwright.sync_api import Page, expect

from chat import services
from chat.models import CloudModel, CloudProvider, CloudProviderKind, GeneratedImage
from tests.servers import API_KEY, ImageProviderFake

from .base import BrowserTestCase, last_reply, nav_open, screenshot, send_from_home, sign_up
from .test_accessibility_browser import serious_problems
from .test_responsive_browser import A_PHONE, sideways_overflow

pytestmark = pytest.mark.browser

CANVAS_BLANK_JS = """(canvas) => !canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height)
  .data.some((value, index) => index % 4 === 3 && value)"""


def _drag(page: Page, selector: str, points: list[tuple[float, float]]) -> None:
    """A stroke across the element, at fractions of its width and height."""
    page.locator(selector).evaluate("(el) => el.scrollIntoView({block: 'center'})")
    box = page.locator(selector).bounding_box()
    assert box is not None
    at = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=5)
    page.mouse.up()


def _alpha_at(png: bytes, x: float, y: float) -> int:
    from PIL import Image

    with Image.open(BytesIO(png)) as mask:
        return mask.convert("RGBA").getpixel((int(mask.width * x), int(mask.height * y)))[3]


class GalleryTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.images = ImageProviderFake(slow_s=3)
        cls.addClassCleanup(cls.images.stop)

    def setUp(self):
        super().setUp()
        provider = services.cloud_provider_save(
            provider=CloudProvider(
                slug="pictures",
                name="Picture Co",
                kind=CloudProviderKind.OPENAI,
                base_url=self.images.base_url,
            ),
            api_key=API_KEY,
        )
        CloudModel.objects.create(provider=provider, name="gpt-image-1", enabled=True, makes_images=True)
        self.images.requests.clear()

    def _generate(self, prompt: str) -> None:
        page = self.page
        page.goto(f"{self.live_server_url}/images/")
        expect(page.locator("#image-recipient")).to_have_text("Picture Co")
        page.fill("#image-prompt", prompt)
        page.get_by_role("button", name="Generate").click()

    def test_generate_watch_edit_with_a_painted_mask_use_in_chat_and_delete(self):
        page = self.page
        sign_up(page, self.live_server_url, "painter@example.com")
        nav_open(page, "Images")
        self._generate("a slow sunrise over the sea")
        card = page.locator(".generation").first
        expect(card.get_by_role("status")).to_contain_text("Being made")  # the provider takes 3 s
        expect(card.locator(".images img")).to_have_count(1, timeout=20_000)
        expect(card).to_contain_text("sent to pictures")
        expect(card).to_contain_text("1024x1024")

        card.get_by_role("link", name="Edit").click()
        canvas = "#mask-canvas"
        _drag(page, canvas, [(0.1, 0.1), (0.3, 0.3)])
        assert not page.locator(canvas).evaluate(CANVAS_BLANK_JS)
        page.get_by_role("button", name="Undo").click()
        assert page.locator(canvas).evaluate(CANVAS_BLANK_JS), "undo took the stroke back"
        _drag(page, canvas, [(0.1, 0.2), (0.4, 0.2), (0.4, 0.4)])  # the top left: to change
        _drag(page, canvas, [(0.8, 0.8), (0.9, 0.9)])
        page.get_by_label("Eraser").check()
        _drag(page, canvas, [(0.8, 0.8), (0.9, 0.9)])  # painted, then erased: stays
        page.fill("#edit-prompt", "add a small red boat")
        page.get_by_role("button", name="Make the new version").click()
        page.wait_for_url(f"{self.live_server_url}/images/#generation-*")
        newest = page.locator(".generation").first
        expect(newest.locator(".images img")).to_have_count(1, timeout=20_000)
        expect(newest).to_contain_text("An edit of an earlier image")
        expect(page.locator(".generation").nth(1).locator(".versions")).to_contain_text("Versions:")
        edit = self.images.requests[-1]
        assert edit["path"] == "/v1/images/edits" and edit["fields"]["prompt"] == "add a small red boat"
        mask = edit["files"]["mask"][0]
        assert _alpha_at(mask, 0.3, 0.2) == 0, "painted: may change"
        assert _alpha_at(mask, 0.85, 0.85) == 255, "erased: stays"
        assert _alpha_at(mask, 0.7, 0.5) == 255, "never painted: stays"
        screenshot(page, "gallery-with-version")

        newest.get_by_role("button", name="Use in chat").click()
        page.wait_for_url(f"{self.live_server_url}/?attach=*")
        chip = page.locator("#composer-attachments .attachment-chip")
        expect(chip).to_have_count(1)
        expect(chip.locator(".chip-name")).to_contain_text("image-")

        page.goto(f"{self.live_server_url}/images/")
        page.on("dialog", lambda dialog: dialog.accept())
        before = GeneratedImage.objects.count()
        page.locator(".generation").first.get_by_role("button", name="Delete").click()
        expect(page.get_by_text("The image was deleted.")).to_be_visible()
        assert GeneratedImage.objects.count() == before - 1
        page.get_by_role("button", name="Delete all").click()
        expect(page.get_by_text("Images you make appear here")).to_be_visible()

    def test_slash_image_in_a_cloud_chat_shows_the_image_in_the_reply(self):
        page = self.page
        chat_model = CloudModel.objects.create(
            provider=CloudProvider.objects.get(slug="pictures"), name="gpt-4o-mini", enabled=True
        )
        sign_up(page, self.live_server_url, "kite@example.com")
        page.goto(f"{self.live_server_url}/?model={chat_model.model_id}")  # as the model picker would
        send_from_home(page, "/image a slow red kite over a beach")
        reply = last_reply(page)
        expect(reply.locator(".message-attachments img")).to_have_count(1, timeout=20_000)  # live, 3 s later
        assert self.images.requests[-1]["fields"]["prompt"] == "a slow red kite over a beach"

    def test_the_gallery_and_the_edit_page_have_no_serious_accessibility_problems(self):
        page = self.page
        sign_up(page, self.live_server_url, "reader@example.com")
        self._generate("a lighthouse")
        expect(page.locator(".generation .images img")).to_have_count(1, timeout=20_000)
        problems = [f"gallery: {problem}" for problem in serious_problems(page)]
        page.locator(".generation").first.get_by_role("link", name="Edit").click()
        problems += [f"edit: {problem}" for problem in serious_problems(page)]
        assert not problems, "\n".join(problems)

    def test_a_refusal_by_the_provider_is_said_on_the_card(self):
        page = self.page
        sign_up(page, self.live_server_url, "refused@example.com")
        self._generate("please refuse this")
        expect(page.locator(".generation").first.get_by_role("alert")).to_contain_text(
            "refused the prompt under its content policy", timeout=20_000
        )


class GalleryOnAPhoneTests(GalleryTests):
    """Every test above again, with a phone's screen and touch, and the layout checked."""

    device = A_PHONE

    def test_the_gallery_and_the_mask_painter_fit_a_phone(self):
        page = self.page
        sign_up(page, self.live_server_url, "phone@example.com")
        self._generate("a wide landscape")
        expect(page.locator(".generation .images img")).to_have_count(1, timeout=20_000)
        assert sideways_overflow(page) is None, sideways_overflow(page)
        page.locator(".generation").first.get_by_role("link", name="Edit").click()
        box = page.locator("#mask-canvas").bounding_box()
        assert box is not None and box["width"] <= 390
        assert sideways_overflow(page) is None, sideways_overflow(page)
        screenshot(page, "phone-mask-painter")

"""The data download read as a person reads it: unzipped, opened from disk in Chromium."""

from __future__ import annotations

import zipfile

import pytest
from playwright.sync_api import sync_playwright

from chat.models import Conversation, Message, Role
from chat.services import upload_save
from localai_site.core.privacy import user_export
from tests.files import uploaded

from .base import CHROMIUM, CHROMIUM_ARGS, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


def test_the_unzipped_export_shows_each_conversation_with_its_messages_offline(make_user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    ann = make_user("ann@example.com")
    trip = Conversation.objects.create(owner=ann, model="local:smollm2", title="Trip to Porto")
    Message.objects.create(
        conversation=trip, role=Role.USER, content="Where should I eat?", model="local:smollm2"
    )
    Message.objects.create(
        conversation=trip, role=Role.ASSISTANT, content="Try **Cervejaria Gazela**.", model="local:smollm2"
    )
    upload_save(owner=ann, conversation=trip, file=uploaded("photo.png"))
    recipe = Conversation.objects.create(
        owner=ann, model="openai:gpt-4o-mini", provider="openai", title="Soup"
    )
    Message.objects.create(
        conversation=recipe, role=Role.USER, content="A soup?", model="openai:gpt-4o-mini", provider="openai"
    )
    user_export(user=ann, destination=tmp_path / "export.zip")
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        archive.extractall(unzipped)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 800})
        page.goto((unzipped / "index.html").as_uri())
        links = page.locator("h2:text('Your conversations') + ul a")
        assert links.all_inner_texts() == ["Soup", "Trip to Porto"]  # the latest first
        links.get_by_text("Trip to Porto").click()
        assert page.locator("h1").inner_text() == "Trip to Porto"
        messages = page.locator("main article")
        assert messages.count() == 2
        assert "You" in messages.nth(0).inner_text() and "Where should I eat?" in messages.nth(0).inner_text()
        assert "sent to smollm2 · this instance" in messages.nth(0).inner_text()
        # The reply's Markdown, rendered; the picture, from its copy in the archive.
        assert messages.nth(1).locator("strong", has_text="Cervejaria Gazela").count() == 1
        picture = page.locator("img[alt='photo.png']")
        assert picture.evaluate("image => image.complete && image.naturalWidth") > 0
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        screenshot(page, "export-conversation-390")
        page.get_by_text("All your data").click()
        page.get_by_text("Soup").click()
        assert "sent to gpt-4o-mini · openai" in page.locator("main article").inner_text()
        browser.close()

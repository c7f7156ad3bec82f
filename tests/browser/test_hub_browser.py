"""An admin installs a second local model from the hub in a real browser, watches it
download, and chats with it: a loopback hub serves a copy of the bundled GGUF as the
catalog's SmolLM2 360M, throttled so that the progress can be seen."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from chat.models import Message, MessageStatus, Role
from models_hub.bundled import bundled_model_path
from models_hub.models import LocalModel
from tests.servers import HubServer

from .base import REPLY_TIMEOUT_MS, BrowserTestCase, last_reply, screenshot, send_from_home, sign_up

pytestmark = pytest.mark.browser

SLUG = "smollm2-360m-instruct"
RATE = 12 * 1000 * 1000  # bytes per second: the 98 MB file takes about 8 seconds

# In the page: the download's status, bar and text, as one consistent reading.
READ_PROGRESS_JS = """
(slug) => {
  const row = document.querySelector(`#installed [data-slug="${slug}"]`);
  if (!row) return null;
  const bar = row.querySelector("progress");
  return {status: row.dataset.status, value: bar ? bar.value : null,
          text: row.querySelector("[data-role=progress-text]")?.textContent || ""};
}
"""


class HubBrowserTests(BrowserTestCase):
    def sample_progress(self, slug: str) -> list[dict]:
        """Readings of the download until it ends; the page reloads itself when it does."""
        samples = []

        def ended() -> bool:
            reading = self.page.evaluate(READ_PROGRESS_JS, slug)
            if reading:
                samples.append(reading)
            return bool(reading) and reading["status"] not in ("queued", "downloading", "verifying")

        self.wait_until(
            ended,
            what=f"the page to show the download of {slug} ended",
            timeout=90,
            every=0.15,
            ignoring=(PlaywrightError,),  # the page is reloading
        )
        return samples

    @classmethod
    def setUpClass(cls):
        cls.hub = HubServer(rate=RATE)
        cls.hub_files = Path(tempfile.mkdtemp(prefix="hub-files-"))
        shutil.copyfile(bundled_model_path(), cls.hub_files / "smollm2-360m-instruct-q8_0.gguf")
        cls.hub.add(
            "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
            "smollm2-360m-instruct-q8_0.gguf",
            cls.hub_files / "smollm2-360m-instruct-q8_0.gguf",
        )
        cls.models_dir = Path(tempfile.mkdtemp(prefix="hub-models-"))
        # Before the server process is forked, so that it downloads from the loopback hub.
        overridden = override_settings(
            HF_ENDPOINT=cls.hub.endpoint,
            MODELS_DIR=cls.models_dir,
            HUB_DISK_RESERVE_MB=0,
            HUB_PROGRESS_INTERVAL_S=0.1,
            CHAT_MAX_TOKENS=60,
            CHAT_TEMPERATURE=0,
        )
        overridden.enable()
        cls.addClassCleanup(overridden.disable)
        cls.addClassCleanup(cls.hub.stop)
        cls.addClassCleanup(shutil.rmtree, cls.hub_files, True)
        cls.addClassCleanup(shutil.rmtree, cls.models_dir, True)
        super().setUpClass()

    def test_an_admin_installs_a_second_model_watches_it_download_and_chats_with_it(self):
        page = self.page
        sign_up(page, self.live_server_url, "owner@example.com")  # the first account is the admin
        page.click(".topnav a:has-text('Models')")
        expect(page.locator("h1")).to_have_text("Model hub")
        expect(page.locator("#live-state")).to_have_text("● Live")

        page.click("button[aria-label='Install SmolLM2 360M Instruct']")
        row = page.locator(f"#installed [data-slug='{SLUG}']")
        expect(row).to_be_visible()
        samples = self.sample_progress(SLUG)
        downloading = [s for s in samples if s["status"] == "downloading" and s["value"]]
        assert len(downloading) >= 5, f"too few progress samples: {samples}"
        values = [s["value"] for s in downloading]
        assert values == sorted(values) and len(set(values)) >= 4, f"the bar did not move: {values}"
        live_text = re.compile(r"^[\d.]+ MB of [\d.]+ MB · [\d.]+ MB/s · \d+ s left$")
        assert any(live_text.match(s["text"]) for s in downloading), [s["text"] for s in downloading]

        # Once verified, the page shows it ready (the socket reloads it on the change).
        expect(row.locator("[data-role=status]")).to_have_text("Ready", timeout=30_000)
        expect(row.locator(".fit")).to_contain_text("Fits")
        screenshot(page, "hub-installed")
        model = LocalModel.objects.get(slug=SLUG)
        assert model.is_ready and (self.models_dir / SLUG / "smollm2-360m-instruct-q8_0.gguf").exists()

        page.click(".brand")
        page.select_option("#model-select", model.model_id)
        send_from_home(page, "Name three colours.")
        reply = last_reply(page)
        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        saved = Message.objects.get(pk=int(reply.get_attribute("data-message-id")))
        assert saved.status == MessageStatus.DONE and saved.content.strip()
        assert saved.model == model.model_id and saved.role == Role.ASSISTANT
        screenshot(page, "hub-chat-with-new-model")

    def test_a_speech_model_downloads_live_on_the_page_and_can_be_cancelled(self):
        from chat.transcription import bundled_model_dir
        from models_hub.catalog import WHISPER_FILES, speech_entry
        from models_hub.models import LocalModelStatus, SpeechModel

        repo = speech_entry("whisper-base-en").repo  # the hub serves tiny.en's files as it
        for name in WHISPER_FILES:
            self.hub.add(repo, name, bundled_model_dir() / name, in_git=name != "model.bin")
        page = self.page
        sign_up(page, self.live_server_url, "voice-admin@example.com")
        page.goto(f"{self.live_server_url}/hub/")
        expect(page.locator("#live-state")).to_have_text("● Live")
        page.get_by_role("button", name="Install Whisper base (English)").click()
        card = page.locator("[data-speech='whisper-base-en']")
        bar = card.locator("[data-role=download] progress")
        expect(card).to_have_attribute("data-status", "downloading")  # reloaded once, from queued
        first = bar.evaluate("bar => bar.value")
        # The bytes move on the page as they arrive: no reload in between.
        page.evaluate("window.notReloaded = true")
        self.wait_until(
            lambda: bar.evaluate("bar => bar.value") > first + 5_000_000,
            what="the bar to move",
            timeout=30,
            every=0.1,
        )
        assert page.evaluate("window.notReloaded === true")
        expect(card.locator("[data-role=progress-text]")).to_have_text(
            re.compile(r"^[\d.]+ MB of [\d.]+ MB \(\d+%\)$")
        )
        screenshot(page, "hub-speech-downloading")

        card.get_by_role("button", name="Cancel the download of Whisper base (English)").click()
        expect(page.locator(".flash")).to_contain_text("stopped downloading")
        expect(card.get_by_role("button", name="Install Whisper base (English)")).to_have_text("Try again")
        model = SpeechModel.objects.get(slug="whisper-base-en")
        assert model.status == LocalModelStatus.CANCELLED and 0 < model.downloaded_bytes < model.size_bytes

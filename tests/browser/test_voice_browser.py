"""Voice input in the browser: Chromium's fake microphone plays speech made by espeak-ng; the
person presses the microphone, watches the level and the timer, stops, and reads the words in
the message box."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from playwright.sync_api import expect

from tests.browser.base import (
    REPLY_TIMEOUT_MS,
    SHORT_MAX_TOKENS,
    BrowserTestCase,
    last_reply,
    screenshot,
    send_from_home,
    sign_up,
)
from tests.chat.conftest import make_cloud_provider
from tests.chat.test_voice import SPOKEN, TRANSCRIBED_S, espeak
from tests.servers import API_KEY, FakeTranscriber

pytestmark = pytest.mark.browser


# The browser's speech engine makes no sound here: the page's calls to it are what is seen.
RECORD_SPEECH_JS = """
window.spoken = [];
const speakForReal = speechSynthesis.speak.bind(speechSynthesis);
speechSynthesis.speak = (utterance) => {
  window.spoken.push({ text: utterance.text, rate: utterance.rate });
  speakForReal(utterance);
};
"""


@override_settings(CHAT_MAX_TOKENS=SHORT_MAX_TOKENS, CHAT_TEMPERATURE=0)
class VoiceInputTests(BrowserTestCase):
    speech_dir = Path(tempfile.mkdtemp(prefix="voice-browser-"))

    @classmethod
    def chromium_extra_args(cls) -> list[str]:
        speech = espeak(SPOKEN, cls.speech_dir / "speech.wav")
        return [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",  # allows the microphone without asking
            f"--use-file-for-fake-audio-capture={speech}",
        ]

    def _recordings_kept(self) -> list[Path]:
        folder = Path(settings.MEDIA_ROOT) / "voice"
        return [p for p in folder.iterdir() if p.is_file()] if folder.exists() else []

    def test_spoken_words_land_in_the_message_box_and_the_recording_is_gone(self):
        page = self.page
        sign_up(page, self.live_server_url, "voice@example.com")
        page.fill("#composer-input", "About the sky:")
        page.click("#voice-button")
        panel = page.locator("#voice-panel")
        panel.wait_for(state="visible")
        assert page.locator("#voice-button").get_attribute("aria-pressed") == "true"
        self.wait_until(
            lambda: page.evaluate("document.getElementById('voice-level').value") > 0.05,
            what="the level meter to show the speech",
        )
        self.wait_until(lambda: page.inner_text("#voice-timer") == "0:03", what="three seconds recorded")
        screenshot(page, "voice-recording-1280")
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        screenshot(page, "voice-recording-390")
        page.click("#voice-stop")
        panel.wait_for(state="hidden")
        self.wait_until(
            lambda: "weather" in page.input_value("#composer-input").lower(),
            what="the words in the message box",
            timeout=TRANSCRIBED_S,
            every=0.2,
        )
        typed = page.input_value("#composer-input")
        assert typed.startswith("About the sky: ") and "today" in typed.lower()  # added to what was there
        assert "read them over, then send" in page.inner_text("#composer-status")
        assert self._recordings_kept() == []

    def test_in_a_cloud_chat_the_person_may_choose_the_providers_transcription(self):
        cloud = FakeTranscriber(text="Words the provider heard.")
        self.addCleanup(cloud.stop)
        provider = make_cloud_provider("fake", cloud.base_url, API_KEY, "gpt-4o")
        provider.transcription_model = "gpt-4o-mini-transcribe"
        provider.save()
        page = self.page
        sign_up(page, self.live_server_url, "cloud-voice@example.com")
        choice = page.locator("#voice-cloud")
        expect(choice).to_be_hidden()  # a local model is chosen: recordings stay here
        page.select_option("#model-select", "cloud:fake/gpt-4o")
        expect(choice).to_contain_text("Transcribe speech with Fake")
        expect(page.locator("#voice-cloud-input")).not_to_be_checked()  # local unless asked
        page.check("#voice-cloud-input")
        page.click("#voice-button")
        page.locator("#voice-panel").wait_for(state="visible")
        page.wait_for_timeout(1500)
        page.click("#voice-stop")
        self.wait_until(
            lambda: page.input_value("#composer-input") == "Words the provider heard.",
            what="the provider's words in the message box",
            timeout=TRANSCRIBED_S,
            every=0.2,
        )
        [sent] = cloud.requests
        assert sent["model"] == "gpt-4o-mini-transcribe" and sent["file_name"] == "recording.webm"
        assert sent["audio"].startswith(b"\x1a\x45\xdf\xa3")  # Chromium's WebM, as recorded
        assert self._recordings_kept() == []

    def test_a_kept_recording_goes_with_the_message_as_an_audio_card(self):
        page = self.page
        sign_up(page, self.live_server_url, "keep@example.com")
        page.click("#voice-button")
        page.locator("#voice-panel").wait_for(state="visible")
        page.check("#voice-keep")
        page.wait_for_timeout(3000)
        page.click("#voice-stop")
        chip = page.locator(".attachment-chip")
        expect(chip).to_contain_text("Voice recording.webm", timeout=TRANSCRIBED_S * 1000)
        expect(chip).to_have_attribute("data-state", "stored")
        self.wait_until(
            lambda: "weather" in page.input_value("#composer-input").lower(),
            what="the words in the message box",
            timeout=TRANSCRIBED_S,
            every=0.2,
        )
        page.click("#send-button")
        sent = page.locator(".message-user .attachment-audio")
        expect(sent).to_contain_text("Voice recording.webm", timeout=REPLY_TIMEOUT_MS)
        expect(sent.locator("audio")).to_have_attribute("controls", "")
        assert self._recordings_kept() == []  # the copy sent to be transcribed is gone
        expect(last_reply(page)).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)

    def test_a_cancelled_recording_is_never_sent(self):
        page = self.page
        sign_up(page, self.live_server_url, "cancel@example.com")
        page.click("#voice-button")
        page.locator("#voice-panel").wait_for(state="visible")
        page.wait_for_timeout(1000)
        page.click("#voice-cancel")
        page.locator("#voice-panel").wait_for(state="hidden")
        assert page.inner_text("#composer-status") == "Recording cancelled."
        assert page.input_value("#composer-input") == ""
        assert self._recordings_kept() == []

    def test_a_finished_reply_is_read_aloud_at_the_speed_chosen_in_the_profile(self):
        page = self.page
        page.add_init_script(RECORD_SPEECH_JS)
        sign_up(page, self.live_server_url, "reader@example.com")
        page.goto(f"{self.live_server_url}/settings/profile/")
        page.fill("#id_speech_rate", "1.5")
        page.click("form.card button.primary")
        expect(page.locator("body")).to_contain_text("Your profile was saved.")
        page.goto(f"{self.live_server_url}/")
        send_from_home(page, "Say hello.")
        reply = last_reply(page)
        read_aloud = reply.locator(".action-speak")
        expect(read_aloud).to_be_hidden()  # not while the reply is being written
        expect(reply).to_have_class(re.compile(r"\bstatus-done\b"), timeout=REPLY_TIMEOUT_MS)
        reply.hover()
        read_aloud.click()
        spoken = self.wait_until(lambda: page.evaluate("window.spoken"), what="the reply to be read")
        assert spoken == [{"text": reply.locator(".message-body").inner_text().strip(), "rate": 1.5}]

"""Voice input: real faster-whisper with the shipped tiny.en on speech made by espeak-ng; the
words come back, the recording is gone, bad recordings are refused with a sentence saying why."""

from __future__ import annotations

import io
import multiprocessing
import os
import subprocess
import time
import wave
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.services import voice, voice_recordings_forget_stale
from chat.transcription import FAULT_ENV, Transcriber, bundled_model_dir
from localai_site.core.queues import Queue
from localai_site.core.tasks import tasks_wait_idle
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

SPOKEN = "Hello, what is the weather like today?"
TRANSCRIBED_S = 120  # the first recording also starts the child process and loads the model


def espeak(text: str, path: Path) -> Path:
    """``text`` spoken by espeak-ng into a WAV file (22 kHz mono)."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, timeout=60)
    return path


def silence_wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\x00\x00" * int(16_000 * seconds))
    return buffer.getvalue()


@pytest.fixture
def speech(tmp_path) -> bytes:
    return espeak(SPOKEN, tmp_path / "speech.wav").read_bytes()


def _stored(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def _record(client, audio: bytes, name: str = "recording"):
    return client.post(reverse("chat:voice_upload"), {"audio": SimpleUploadedFile(name, audio)})


def _transcribed(client, audio: bytes) -> dict:
    """What the page is told once the recording has been through the worker."""
    response = _record(client, audio)
    assert response.status_code == 202, response.content
    tasks_wait_idle(Queue.LOCAL, timeout=TRANSCRIBED_S)
    answer = client.get(response.json()["status_url"])
    assert answer.status_code == 200
    return answer.json()


def test_speech_is_transcribed_on_the_instance_and_the_recording_is_gone(client, user, media, speech):
    client.force_login(user)
    response = _record(client, speech)
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    tasks_wait_idle(Queue.LOCAL, timeout=TRANSCRIBED_S)
    result = client.get(status_url).json()
    assert result["state"] == "done", result
    words = result["text"].lower()
    assert "weather" in words and "today" in words, words
    assert _stored(media) == []  # the recording was deleted once transcribed
    assert client.get(status_url).status_code == 404  # the words are handed out once


def test_a_recording_is_theirs_alone(client, user, other_user, speech):
    client.force_login(user)
    status_url = _record(client, speech).json()["status_url"]
    client.force_login(other_user)
    assert client.get(status_url).status_code == 404
    tasks_wait_idle(Queue.LOCAL, timeout=TRANSCRIBED_S)
    client.force_login(user)
    assert client.get(status_url).json()["state"] == "done"


def test_signed_out_visitors_cannot_record(client, speech):
    response = _record(client, speech)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(
    ("audio", "error"),
    [
        (b"", "The recording is empty"),
        (b"hello, this is text and not a recording at all", "not a recording we can read"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a recording we can read"),
    ],
    ids=["empty", "text", "image"],
)
def test_what_is_not_audio_is_refused_at_once_and_not_kept(client, user, media, audio, error):
    client.force_login(user)
    response = _record(client, audio)
    assert response.status_code == 400 and error in response.json()["error"]
    assert _stored(media) == []


def test_a_recording_too_large_is_refused_and_not_kept(client, user, media, settings, speech):
    settings.VOICE_MAX_BYTES = 10_000
    client.force_login(user)
    response = _record(client, speech)
    assert response.status_code == 400
    assert "recordings up to 9.8\xa0KB can be transcribed" in response.json()["error"]
    assert _stored(media) == []


@pytest.mark.parametrize(
    ("audio", "error"),
    [
        (silence_wav(3), "No speech was heard in the recording"),
        (b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40, "could not be read: it is damaged or incomplete"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100), "could not be read: it is damaged or incomplete"),
    ],
    ids=["silent", "broken-webm", "broken-wav"],
)
def test_silent_or_damaged_recordings_are_refused_and_deleted(client, user, media, audio, error):
    client.force_login(user)
    result = _transcribed(client, audio)
    assert result["state"] == "refused" and error in result["error"], result
    assert _stored(media) == []


def test_a_recording_too_long_is_refused_and_deleted(client, user, media, settings, speech):
    settings.VOICE_MAX_SECONDS = 1
    client.force_login(user)
    result = _transcribed(client, speech)
    assert result["state"] == "refused"
    assert "recordings up to 1 seconds can be transcribed" in result["error"], result
    assert _stored(media) == []


def test_a_person_who_restricted_processing_cannot_record(client, user, media, speech):
    user.processing_restricted = True
    user.save()
    client.force_login(user)
    response = _record(client, speech)
    assert response.status_code == 400 and "Processing of your data is restricted" in response.json()["error"]
    assert _stored(media) == []


def test_the_read_aloud_voice_and_speed_are_remembered_per_person(client, user):
    client.force_login(user)
    client.post(
        reverse("accounts:profile"),
        {"display_name": "Ann", "speech_voice": "English (Great Britain)", "speech_rate": "1.4"},
    )
    user.refresh_from_db()
    assert (user.speech_voice, user.speech_rate) == ("English (Great Britain)", 1.4)
    page = client.get(reverse("chat:home")).content.decode()
    assert 'data-speech-voice="English (Great Britain)" data-speech-rate="1.4"' in page
    client.post(reverse("accounts:profile"), {"display_name": "Ann"})  # a page from before the choice existed
    user.refresh_from_db()
    assert user.speech_rate == 1.4
    response = client.post(reverse("accounts:profile"), {"display_name": "Ann", "speech_rate": "5"})
    assert "less than or equal to 2.0" in response.content.decode()
    user.refresh_from_db()
    assert user.speech_rate == 1.4


def test_recordings_a_dead_worker_left_behind_are_deleted(media):
    folder = media / "voice"
    folder.mkdir(parents=True)
    left_behind, waiting = folder / "left-behind", folder / "waiting"
    left_behind.write_bytes(b"OggS")
    waiting.write_bytes(b"OggS")
    an_hour_ago = time.time() - 3600
    os.utime(left_behind, (an_hour_ago, an_hour_ago))
    assert voice_recordings_forget_stale() == 1
    assert _stored(media) == [waiting]  # still in the queue: its task deletes it


def test_a_transcriber_that_dies_fails_the_recording_and_deletes_it(
    client, user, media, speech, monkeypatch, tmp_path
):
    # A real child process that dies starting (no model where it looks): as a crash would end it.
    monkeypatch.setattr(voice, "transcriber", lambda: Transcriber(tmp_path / "no-model-here"))
    client.force_login(user)
    result = _transcribed(client, speech)
    assert result == {"state": "refused", "text": "", "error": "Transcription failed; please try again."}
    assert _stored(media) == []


def test_one_recording_at_a_time_per_person(client, user, other_user, speech):
    client.force_login(user)
    assert _record(client, speech).status_code == 202
    second = _record(client, speech)
    assert second.status_code == 400 and "still being transcribed" in second.json()["error"]
    client.force_login(other_user)
    assert _record(client, speech).status_code == 202  # other people are not held up
    tasks_wait_idle(Queue.LOCAL, timeout=TRANSCRIBED_S)
    client.force_login(user)
    assert _record(client, speech).status_code == 202  # once its words are there, the next
    tasks_wait_idle(Queue.LOCAL, timeout=TRANSCRIBED_S)


def test_a_transcription_that_hangs_is_stopped_and_the_next_recording_works(
    client, user, media, speech, monkeypatch, settings
):
    own = Transcriber(bundled_model_dir())
    others = set(multiprocessing.active_children())  # the shared transcriber's, if it started
    monkeypatch.setattr(voice, "transcriber", lambda: own)
    monkeypatch.setenv(FAULT_ENV, "hang")  # the child reads it when it starts: it sleeps for an hour
    settings.VOICE_TRANSCRIBE_TIMEOUT_SECONDS = 5
    client.force_login(user)
    started = time.monotonic()
    result = _transcribed(client, speech)
    assert result["state"] == "refused", result
    assert "took longer than 5 seconds and was stopped. Please try again" in result["error"]
    assert time.monotonic() - started < 60
    assert _stored(media) == []
    wait_until(lambda: set(multiprocessing.active_children()) <= others, what="the hung child to be killed")

    monkeypatch.delenv(FAULT_ENV)
    settings.VOICE_TRANSCRIBE_TIMEOUT_SECONDS = TRANSCRIBED_S
    result = _transcribed(client, speech)
    assert result["state"] == "done" and "weather" in result["text"].lower(), result

"""Speech models from the hub: a loopback hub (tests/servers.py: HubServer) serves the bundled
Whisper tiny.en's files as if they were one of the catalog's faster-whisper repositories; the
instance downloads them as a folder, checks each against the hub's sha256, and voice input
then transcribes with them (real faster-whisper, speech made by espeak-ng)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat import transcription
from chat.transcription import bundled_model_dir
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import tasks_wait_idle
from models_hub import services
from models_hub.catalog import WHISPER_FILES, speech_entry
from models_hub.models import DOWNLOAD_ACTIVE, LocalModelStatus, SpeechModel
from models_hub.selectors import speech_model_in_use
from models_hub.services.speech import speech_folder
from tests.chat.test_voice import SPOKEN, TRANSCRIBED_S, espeak
from tests.waiting import wait_until

from .conftest import files_in

pytestmark = pytest.mark.django_db(transaction=True)  # the download and voice tasks run on threads


def serve_bundled_as(hub, slug: str) -> str:
    """The hub serves tiny.en's files as the catalog's ``slug``, as huggingface.co serves a
    faster-whisper repository: model.bin from LFS (with its sha256), the small files from git
    (with only their git blob id). Returns the repository."""
    repo = speech_entry(slug).repo
    for name in WHISPER_FILES:
        hub.add(repo, name, bundled_model_dir() / name, in_git=name != "model.bin")
    return repo


def installed(slug: str, admin) -> SpeechModel:
    services.speech_model_install(slug=slug, requested_by=admin)
    return wait_until(
        lambda: (m := SpeechModel.objects.get(slug=slug)).status not in DOWNLOAD_ACTIVE and m,
        what=f"{slug} to download",
        timeout=120,
        every=0.05,
    )


def transcribed(client, tmp_path: Path) -> dict:
    audio = espeak(SPOKEN, tmp_path / "speech.wav").read_bytes()
    response = client.post(reverse("chat:voice_upload"), {"audio": SimpleUploadedFile("recording", audio)})
    assert response.status_code == 202, response.content
    tasks_wait_idle(Queue.LOCAL, timeout=TRANSCRIBED_S)
    return client.get(response.json()["status_url"]).json()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("slug", ["whisper-base-en", "whisper-base"], ids=["english", "multilingual"])
def test_a_speech_model_from_the_hub_is_verified_put_in_use_and_transcribes(
    hub, admin, client, settings, tmp_path, slug
):
    repo = serve_bundled_as(hub, slug)
    model = installed(slug, admin)
    assert model.status == LocalModelStatus.READY, model.error
    folder = Path(model.folder)
    assert files_in(folder) == sorted(WHISPER_FILES)  # no .partial left
    for name in WHISPER_FILES:
        assert sha256_of(folder / name) == hub.files[(repo, name)].sha256
    assert model.size_bytes == model.downloaded_bytes == sum(hub.files[(repo, n)].size for n in WHISPER_FILES)
    assert speech_model_in_use() is None  # installed is not yet in use: tiny.en still is

    services.speech_model_use(model=model)
    client.force_login(admin)
    result = transcribed(client, tmp_path)
    assert result["state"] == "done" and "weather" in result["text"].lower(), result
    engine = transcription._transcriber
    assert (engine.model_dir, engine.multilingual) == (folder, slug == "whisper-base")

    services.speech_model_delete(model=model)  # back to the bundled model, files gone
    assert speech_model_in_use() is None and not folder.exists()
    result = transcribed(client, tmp_path)
    assert result["state"] == "done" and transcription._transcriber.model_dir == bundled_model_dir()


@pytest.mark.parametrize(
    ("damaged", "claim", "error"),
    [
        ("model.bin", {"sha256": "0" * 64}, "The downloaded model.bin is damaged: its sha256 is"),
        (
            "tokenizer.json",
            {"git_oid": "0" * 40},
            "The downloaded tokenizer.json is damaged: its git blob id is",
        ),
    ],
    ids=["lfs-file", "git-file"],
)
def test_a_damaged_file_fails_the_install_and_voice_keeps_the_bundled_model(
    hub, admin, damaged, claim, error
):
    repo = serve_bundled_as(hub, "whisper-small-en")
    hub.files[(repo, damaged)] = dataclasses.replace(hub.files[(repo, damaged)], **claim)
    model = installed("whisper-small-en", admin)
    assert model.status == LocalModelStatus.FAILED
    assert error in model.error
    assert damaged not in files_in(speech_folder(model))
    with pytest.raises(Refusal, match="is not installed yet"):
        services.speech_model_use(model=model)
    assert speech_model_in_use() is None


def test_admins_install_and_choose_speech_models_on_the_hub_page(hub, admin, make_user, client):
    serve_bundled_as(hub, "whisper-base-en")
    client.force_login(admin)
    page = client.get(reverse("hub:index")).content.decode()
    assert "Speech models (voice input)" in page and 'aria-label="Install Whisper base (English)"' in page
    response = client.post(reverse("hub:speech_install", args=["whisper-base-en"]), follow=True)
    assert "Whisper base (English) is being downloaded" in response.content.decode()
    wait_until(lambda: SpeechModel.objects.get().is_ready, what="the download", timeout=120)
    response = client.post(reverse("hub:speech_use", args=["whisper-base-en"]), follow=True)
    assert "Voice input now transcribes with Whisper base (English)." in response.content.decode()
    assert speech_model_in_use().slug == "whisper-base-en"
    response = client.post(reverse("hub:speech_use", args=["bundled"]), follow=True)
    assert "Voice input now transcribes with Whisper tiny.en." in response.content.decode()
    assert speech_model_in_use() is None

    client.force_login(make_user("someone@example.com"))
    assert client.post(reverse("hub:speech_install", args=["whisper-small"])).status_code == 403
    assert client.post(reverse("hub:speech_delete", args=["whisper-base-en"])).status_code == 403
    assert SpeechModel.objects.count() == 1

"""Cloud transcription: in a cloud chat the person may have the provider transcribe a recording
(the real openai SDK against a loopback /v1/audio/transcriptions of ours); a local chat's
recordings never leave the instance, and each one sent is on the person's access report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import InstanceSettings
from chat import services
from chat.models import CloudTranscription, Message
from localai_site.core.queues import Queue
from localai_site.core.tasks import tasks_wait_idle
from tests.chat.conftest import make_cloud_provider
from tests.chat.test_voice import SPOKEN, TRANSCRIBED_S, espeak, silence_wav
from tests.servers import API_KEY, FakeTranscriber
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # the cloud queue's threads read the rows

CLOUD_MODEL = "cloud:fake/gpt-4o"


@pytest.fixture
def speech(tmp_path) -> bytes:
    return espeak(SPOKEN, tmp_path / "speech.wav").read_bytes()


@pytest.fixture
def cloud():
    server = FakeTranscriber()
    yield server
    server.stop()


@pytest.fixture
def provider(cloud):
    provider = make_cloud_provider("fake", cloud.base_url, API_KEY, "gpt-4o")
    provider.transcription_model = "gpt-4o-mini-transcribe"
    provider.save()
    return provider


def _stored(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def _record(client, audio: bytes, **fields):
    return client.post(
        reverse("chat:voice_upload"), {"audio": SimpleUploadedFile("recording", audio), **fields}
    )


def _outcome(client, response, queue: str) -> dict:
    """What the page is told once the recording has been transcribed."""
    assert response.status_code == 202, response.content
    tasks_wait_idle(queue, timeout=TRANSCRIBED_S)
    status_url = response.json()["status_url"]

    def answered() -> dict | None:
        answer = client.get(status_url).json()
        return answer if answer["state"] != "pending" else None

    return wait_until(answered, what="the recording's words", timeout=TRANSCRIBED_S, every=0.1)


def test_in_a_cloud_chat_the_provider_transcribes_when_asked_and_it_is_on_the_access_report(
    client, user, media, speech, cloud, provider
):
    conversation = services.conversation_create(owner=user, model_id=CLOUD_MODEL)
    client.force_login(user)
    result = _outcome(
        client,
        _record(client, speech, cloud_model=CLOUD_MODEL, conversation=str(conversation.pk)),
        Queue.CLOUD,
    )
    assert result == {"state": "done", "text": "Hello from the cloud.", "error": ""}
    [sent] = cloud.requests
    assert sent["path"] == "/v1/audio/transcriptions"
    assert sent["authorization"] == f"Bearer {API_KEY}"
    assert sent["model"] == "gpt-4o-mini-transcribe"
    assert sent["file_name"] == "recording.wav"  # its format; nothing else of ours
    assert sent["audio"] == speech
    assert _stored(media) == []  # deleted once transcribed, as a local one is
    record = CloudTranscription.objects.get()
    assert (record.owner, record.conversation, record.provider) == (user, conversation, "fake")
    privacy = client.get(reverse("accounts:privacy")).content.decode()
    assert "<td>fake</td><td>0</td><td>1</td>" in privacy  # no messages yet, one recording


def test_the_chat_page_offers_the_providers_transcription_only_for_its_models(client, user, provider):
    make_cloud_provider("plain", "http://127.0.0.1:1/v1", API_KEY, "chat-only")
    client.force_login(user)
    page = client.get(reverse("chat:home")).content.decode()
    options = dict(re.findall(r'<option value="(cloud:[^"]+)"([^>]*)>', page))
    assert "data-transcribes" in options[CLOUD_MODEL]
    assert "data-transcribes" not in options["cloud:plain/chat-only"]
    assert 'id="voice-cloud" hidden' in page  # shown (unticked) once such a model is chosen


def test_without_asking_a_cloud_chats_recording_is_transcribed_on_the_instance(
    client, user, media, speech, cloud, provider
):
    conversation = services.conversation_create(owner=user, model_id=CLOUD_MODEL)
    client.force_login(user)
    result = _outcome(client, _record(client, speech, conversation=str(conversation.pk)), Queue.LOCAL)
    assert result["state"] == "done" and "weather" in result["text"].lower(), result
    assert cloud.requests == [] and not CloudTranscription.objects.exists()


def test_a_local_chats_recording_never_goes_to_the_cloud(
    client, user, media, speech, cloud, provider, conversation
):
    Message.objects.create(conversation=conversation, role="user", content="Hi", provider="local")
    client.force_login(user)
    response = _record(client, speech, cloud_model=CLOUD_MODEL, conversation=str(conversation.pk))
    assert response.status_code == 400
    assert "stays on this instance" in response.json()["error"]
    response = _record(client, speech, cloud_model=conversation.model)  # a local model chosen
    assert response.status_code == 400
    assert "transcribed on this instance only" in response.json()["error"]
    assert cloud.requests == [] and _stored(media) == []


@pytest.mark.parametrize(
    ("switch", "error"),
    [("local_only", "local models only"), ("cloud_off", "Cloud providers are turned off")],
)
def test_a_local_only_account_or_instance_sends_no_recording(
    client, user, media, speech, cloud, provider, switch, error
):
    if switch == "local_only":
        user.local_only = True
        user.save()
    else:
        InstanceSettings.objects.update_or_create(pk=1, defaults={"cloud_enabled": False})
    client.force_login(user)
    response = _record(client, speech, cloud_model=CLOUD_MODEL)
    assert response.status_code == 400 and error in response.json()["error"]
    assert cloud.requests == [] and _stored(media) == []


def test_a_provider_without_transcription_is_refused_with_the_way_out(client, user, media, speech, cloud):
    make_cloud_provider("fake", cloud.base_url, API_KEY, "gpt-4o")
    client.force_login(user)
    response = _record(client, speech, cloud_model=CLOUD_MODEL)
    assert response.status_code == 400
    assert "Fake does not transcribe recordings here" in response.json()["error"]
    assert cloud.requests == [] and _stored(media) == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, "Fake refused the API key. An admin needs to check it."),
        (429, "Fake is limiting requests right now. Try again in a moment."),
    ],
)
def test_a_provider_error_is_said_plainly_and_the_recording_is_gone(
    client, user, media, speech, cloud, provider, status, error
):
    cloud.status = status
    client.force_login(user)
    result = _outcome(client, _record(client, speech, cloud_model=CLOUD_MODEL), Queue.CLOUD)
    assert result == {"state": "refused", "text": "", "error": error}
    assert len(cloud.requests) == 1 and _stored(media) == []
    assert CloudTranscription.objects.filter(provider="fake").count() == 1  # it did receive the audio
    # The next recording goes again: nothing is stuck busy.
    cloud.status = 200
    assert _outcome(client, _record(client, speech, cloud_model=CLOUD_MODEL), Queue.CLOUD)["state"] == "done"


@pytest.mark.parametrize(
    ("problem", "error"),
    [
        ("too_long", "recordings up to 1 seconds can be transcribed"),
        ("silent", "No speech was heard in the recording"),
        ("broken", "could not be read: it is damaged or incomplete"),
    ],
)
def test_a_recording_the_instance_would_refuse_is_refused_before_the_provider_gets_it(
    client, user, media, speech, cloud, provider, settings, problem, error
):
    settings.VOICE_MAX_SECONDS = 1 if problem == "too_long" else 120
    audio = {
        "too_long": speech,
        "silent": silence_wav(3),
        "broken": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100),
    }
    client.force_login(user)
    result = _outcome(client, _record(client, audio[problem], cloud_model=CLOUD_MODEL), Queue.CLOUD)
    assert result["state"] == "refused" and error in result["error"], result
    assert cloud.requests == [] and not CloudTranscription.objects.exists(), "nothing was sent"
    assert _stored(media) == []

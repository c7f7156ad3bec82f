"""A voice recording kept as an attachment ("Keep the recording"): stored by the one upload
service (its WebM or Ogg container checked by content), sent with the message as an audio card,
to no model, its owner's alone, and gone with the message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat import services
from chat.models import CloudModel, Message, MessageStatus, Upload
from tests.chat.conftest import make_cloud_provider

pytestmark = pytest.mark.django_db


def recording(container: str) -> bytes:
    """A second of Opus in ``container`` (webm or ogg), as a browser's MediaRecorder makes."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream("libopus", rate=48_000)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(48_000) / 48_000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 48_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            muxer.mux(packet)
    return out.getvalue()


def _attach(client, name: str, data: bytes):
    return client.post(reverse("chat:upload_new"), {"file": SimpleUploadedFile(name, data, "audio/webm")})


@pytest.mark.parametrize(("container", "content_type"), [("webm", "audio/webm"), ("ogg", "audio/ogg")])
def test_a_kept_recording_is_stored_by_its_content(client, user, container, content_type):
    client.force_login(user)
    response = _attach(client, f"Voice recording.{container}", recording(container))
    assert response.status_code == 201, response.content
    upload = Upload.objects.get(pk=response.json()["id"])
    assert (upload.content_type, upload.is_audio, upload.message) == (content_type, True, None)


def test_audio_of_another_container_is_refused_saying_what_is_taken(client, user, media):
    client.force_login(user)
    response = _attach(client, "song.mp3", b"ID3\x04\x00" + bytes(500))  # an MP3, whatever its name
    assert response.status_code == 400
    assert "or a WebM or Ogg recording" in response.json()["error"]
    assert not Upload.objects.exists()


def test_a_kept_recording_goes_with_the_message_as_an_audio_card_and_to_no_model(
    client, user, other_user, misbehaving_server, django_capture_on_commit_callbacks
):
    make_cloud_provider("echoes", misbehaving_server.base_url, "sk-test-echo-123456", "echo")
    CloudModel.objects.filter(name="echo").update(sees_images=True)
    model_id = "cloud:echoes/echo"
    conversation = services.conversation_create(owner=user, model_id=model_id)
    client.force_login(user)
    audio = recording("webm")
    kept = Upload.objects.get(pk=_attach(client, "Voice recording.webm", audio).json()["id"])
    sent, reply = services.message_send(
        conversation=conversation, content="What the recording says", model_id=model_id, upload_ids=[kept.pk]
    )
    services.reply_generate(message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    asked = misbehaving_server.requests[-1]["messages"][-1]
    assert asked == {"role": "user", "content": "What the recording says"}  # the words, no audio
    assert "audio" not in json.dumps(misbehaving_server.requests)
    kept.refresh_from_db()
    assert kept.message == sent and not kept.deliveries.exists()  # no model received it

    download = reverse("chat:upload_download", args=[kept.pk])
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert f'<audio controls preload="none" src="{download}"' in page
    assert b"".join(client.get(download).streaming_content) == audio
    client.force_login(other_user)
    assert client.get(download).status_code == 404  # its owner's alone

    on_disk = Path(settings.MEDIA_ROOT) / kept.file.name
    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.DONE)
    with django_capture_on_commit_callbacks(execute=True):  # files go once the rows have
        services.conversation_delete(conversation=conversation)
    assert not Upload.objects.filter(pk=kept.pk).exists()
    assert not on_disk.exists()

"""Files sent with a message: the sender's own, to a model that can see images (as data URLs,
never a URL of ours), never across the privacy line, and gone with what they were sent with."""

import base64
import json
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from chat import services
from chat.frames import SendFrame, frame_parse
from chat.models import CloudModel, Message, MessageStatus, Upload
from chat.providers.cloud import model_sees_images
from chat.services import upload_save
from localai_site.core.refusals import Refusal
from tests.chat.conftest import make_cloud_provider
from tests.files import uploaded

pytestmark = pytest.mark.django_db


@pytest.fixture
def vision(misbehaving_server):
    """A provider with a model that sees images ("Echo Vision") and one that does not ("paced")."""
    make_cloud_provider("seer", misbehaving_server.base_url, "sk-test-seer-123456", "echo", "paced")
    CloudModel.objects.filter(name="echo").update(sees_images=True, label="Echo Vision")
    return misbehaving_server


def _cloud_chat(user, name: str):
    model_id = f"cloud:seer/{name}"
    return services.conversation_create(owner=user, model_id=model_id), model_id


def _on_disk(upload: Upload) -> Path:
    return Path(settings.MEDIA_ROOT) / upload.file.name


def _replies_done(conversation) -> None:
    Message.objects.filter(conversation=conversation).update(status=MessageStatus.DONE)


def test_an_image_reaches_a_cloud_model_as_a_data_url_and_records_who_received_it(user, vision):
    conversation, model_id = _cloud_chat(user, "echo")
    image = upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    sent, reply = services.message_send(
        conversation=conversation, content="What colour is this?", model_id=model_id, upload_ids=[image.pk]
    )
    services.reply_generate(message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    assert reply.content.strip() == "What colour is this?"
    text, picture = vision.requests[-1]["messages"][-1]["content"]
    assert text == {"type": "text", "text": "What colour is this?"}
    assert picture["type"] == "image_url"
    scheme, data = picture["image_url"]["url"].split(",", 1)
    assert scheme == "data:image/png;base64" and base64.b64decode(data) == _on_disk(image).read_bytes()
    request = json.dumps(vision.requests)
    assert str(image.pk) not in request and image.file.name not in request, "never a URL or key of ours"
    image.refresh_from_db()
    assert (image.message, image.conversation) == (sent, conversation)
    assert list(image.deliveries.values_list("model", "provider")) == [(model_id, "seer")]


def test_a_file_goes_with_the_history_and_each_model_that_received_it_is_listed(client, user, vision):
    make_cloud_provider("lens", vision.base_url, "sk-test-lens-123456", "echo")
    CloudModel.objects.filter(provider__slug="lens").update(sees_images=True)
    conversation, model_id = _cloud_chat(user, "echo")
    image = upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    notes = upload_save(owner=user, conversation=None, file=uploaded("notes.txt"))
    _, reply = services.message_send(
        conversation=conversation, content="Look", model_id=model_id, upload_ids=[image.pk, notes.pk]
    )
    services.reply_generate(message_id=reply.pk)
    for _ in range(2):  # the second time to the same model: still one record of it
        _, reply = services.message_send(
            conversation=conversation, content="And now?", model_id="cloud:lens/echo"
        )
        services.reply_generate(message_id=reply.pk)
    waiting = upload_save(owner=user, conversation=conversation, file=uploaded("photo.jpg"))

    for upload in (image, notes):
        assert list(upload.deliveries.values_list("model", "provider")) == [
            (model_id, "seer"),
            ("cloud:lens/echo", "lens"),
        ]
    assert not waiting.deliveries.exists()
    client.force_login(user)
    page = client.get(reverse("accounts:privacy")).content.decode()
    assert page.count("<td>seer, lens</td>") == 2 and page.count("not sent") == 1


def test_a_model_that_cannot_see_images_is_refused_with_the_names_of_those_that_can(user, vision):
    conversation, model_id = _cloud_chat(user, "paced")
    image = upload_save(owner=user, conversation=None, file=uploaded("photo.jpg"))
    with pytest.raises(Refusal) as refused:
        services.message_send(
            conversation=conversation, content="Look", model_id=model_id, upload_ids=[image.pk]
        )
    assert refused.value.code == "no_vision"
    assert refused.value.message == "paced cannot look at images. Models that can: Echo Vision (Seer)."
    assert not conversation.messages.exists() and vision.requests == []
    image.refresh_from_db()
    assert image.message is None, "still in the composer, to send to another model"


def test_once_a_chat_holds_images_a_model_that_cannot_see_them_is_refused(user, vision):
    conversation, model_id = _cloud_chat(user, "echo")
    image = upload_save(owner=user, conversation=conversation, file=uploaded("photo.webp"))
    services.message_send(conversation=conversation, content="Look", model_id=model_id, upload_ids=[image.pk])
    _replies_done(conversation)
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="And you?", model_id="cloud:seer/paced")
    assert refused.value.code == "no_vision" and "Echo Vision (Seer)" in refused.value.message


def test_images_never_go_to_a_local_model_nor_from_a_local_chat_to_the_cloud(user, conversation, vision):
    image = upload_save(owner=user, conversation=conversation, file=uploaded("photo.png"))
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Describe it", upload_ids=[image.pk])
    assert refused.value.code == "no_vision"
    assert refused.value.message.endswith("cannot look at images. Models that can: Echo Vision (Seer).")
    services.message_send(conversation=conversation, content="Hello")  # now it stays on the instance
    _replies_done(conversation)
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Describe it", upload_ids=[image.pk])
    assert refused.value.code == "no_vision" and "stays on this instance" in refused.value.message
    assert "Echo Vision" not in refused.value.message, "a cloud model is no way out of a local chat"
    with pytest.raises(Refusal) as refused:
        services.message_send(
            conversation=conversation, content="Describe", model_id="cloud:seer/echo", upload_ids=[image.pk]
        )
    assert refused.value.code == "stays_local"
    assert vision.requests == [] and Upload.objects.get().message is None


def test_only_ones_own_files_not_sent_yet_go_with_a_message(user, other_user, conversation):
    bobs = upload_save(owner=other_user, conversation=None, file=uploaded("notes.txt"))
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Here", upload_ids=[bobs.pk])
    assert refused.value.code == "upload_gone"
    mine = upload_save(owner=user, conversation=None, file=uploaded("report.pdf"))
    sent, _ = services.message_send(conversation=conversation, content="Here", upload_ids=[mine.pk])
    assert list(sent.attachments.all()) == [mine]
    _replies_done(conversation)
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Again", upload_ids=[mine.pk])
    assert refused.value.code == "upload_gone" and "attach it again" in refused.value.message
    bobs.refresh_from_db()
    assert bobs.message is None and bobs.conversation is None


def test_the_sent_files_show_in_the_conversation(client, user, conversation):
    photo = upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    pdf = upload_save(owner=user, conversation=None, file=uploaded("report.pdf"))
    services.message_send(conversation=conversation, content="Notes", upload_ids=[pdf.pk])
    _replies_done(conversation)
    client.force_login(user)
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert f'href="{reverse("chat:upload_download", args=[pdf.pk])}"' in page and "report.pdf" in page
    assert str(photo.pk) not in page


def test_editing_a_message_deletes_the_files_of_the_messages_it_replaces(
    user, conversation, django_capture_on_commit_callbacks
):
    first, _ = services.message_send(conversation=conversation, content="One")
    _replies_done(conversation)
    notes = upload_save(owner=user, conversation=conversation, file=uploaded("notes.txt"))
    services.message_send(conversation=conversation, content="Two", upload_ids=[notes.pk])
    _replies_done(conversation)
    with django_capture_on_commit_callbacks() as after_commit:
        services.message_edit(conversation=conversation, message_id=first.pk, content="One, again")
    for callback in after_commit:  # what the commit does to files (not the reply's queueing)
        if callback.__module__ == "localai_site.core.files":
            callback()
    assert not Upload.objects.exists() and not _on_disk(notes).exists()


def test_a_send_frame_carries_at_most_a_messages_worth_of_file_ids():
    ids = [str(uuid.uuid4()) for _ in range(2)]
    frame = frame_parse(json.dumps({"type": "send", "content": "hi", "uploads": ids}), conversation_id="c")
    assert frame == SendFrame(content="hi", model=None, uploads=tuple(uuid.UUID(i) for i in ids))
    for bad in (["not-an-id"], [7], "x", [str(uuid.uuid4()) for _ in range(Upload.PER_MESSAGE + 1)]):
        with pytest.raises(Refusal) as refused:
            frame_parse(json.dumps({"type": "send", "content": "hi", "uploads": bad}), conversation_id="c")
        assert refused.value.code == "bad_frame"


@pytest.mark.parametrize(
    ("name", "sees"),
    [
        ("gpt-4o-mini", True),
        ("gpt-4.1", True),
        ("gpt-5", True),
        ("claude-sonnet-4-20250514", True),
        ("models/gemini-2.0-flash", True),
        ("grok-2-vision-1212", True),
        ("gpt-3.5-turbo", False),
        ("gpt-4o-mini-tts", False),
        ("deepseek-chat", False),
        ("text-embedding-3-small", False),
    ],
)
def test_discovery_guesses_from_the_name_which_models_see_images(name, sees):
    assert model_sees_images(name) is sees

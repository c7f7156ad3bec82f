"""Images in a local conversation: a local model that sees images reads them through the real
model runner (the bundled model with a tiny random projector, tests/models_hub/tiny_projector.py),
one that cannot is refused with the names of the local ones that can, and the conversation's
images never go to a cloud model."""

import pytest

from chat import services
from chat.models import CloudModel, Message, MessageStatus, Provider
from chat.services import upload_save
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import tasks_wait_idle
from models_hub.bundled import bundled_model_path
from models_hub.gguf import gguf_read
from models_hub.models import LocalModel, LocalModelStatus, ModelSource
from models_hub.services.model_file import header_fields
from tests.chat.conftest import make_cloud_provider
from tests.files import uploaded
from tests.models_hub.tiny_projector import IMAGE_TOKENS, PARTS_TEMPLATE, tiny_projector_write

pytestmark = pytest.mark.django_db


@pytest.fixture
def vision_model(local_model, tmp_path) -> LocalModel:
    """A local model that sees images: the bundled GGUF with a projector beside it."""
    projector = tiny_projector_write(tmp_path / "mmproj-tiny.gguf")
    path = bundled_model_path()
    return LocalModel.objects.create(
        **header_fields(gguf_read(path)),
        slug="tiny-vision",
        name="Tiny Vision",
        source=ModelSource.PATH,
        file_path=str(path),
        projector_path=str(projector),
        size_bytes=path.stat().st_size + projector.stat().st_size,
        chat_template_override=PARTS_TEMPLATE,
        status=LocalModelStatus.READY,
    )


@pytest.fixture
def cloud_vision(misbehaving_server):
    make_cloud_provider("seer", misbehaving_server.base_url, "sk-test-seer-123456", "echo")
    CloudModel.objects.filter(name="echo").update(sees_images=True, label="Echo Vision")
    return misbehaving_server


def _ask(user, model_id: str, *, image: bool) -> Message:
    conversation = services.conversation_create(owner=user, model_id=model_id)
    uploads = [upload_save(owner=user, conversation=None, file=uploaded("photo.png"))] if image else []
    _, reply = services.message_send(
        conversation=conversation, content="What is in the picture?", model_id=model_id,
        upload_ids=[upload.pk for upload in uploads],
    )  # fmt: skip
    # Outside a test transaction the reply is handed to the local pool at once, as on a
    # real instance: wait for that run rather than race it with one of our own.
    tasks_wait_idle(Queue.LOCAL, timeout=180)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    return reply


@pytest.mark.django_db(transaction=True)  # the reply's heartbeat writes from a thread of its own
def test_a_local_model_that_sees_images_reads_them_on_this_instance(
    user, vision_model, cloud_vision, short_replies
):
    with_image = _ask(user, vision_model.model_id, image=True)
    assert with_image.provider == Provider.LOCAL and with_image.completion_tokens
    text_only = _ask(user, vision_model.model_id, image=False)
    assert with_image.prompt_tokens - text_only.prompt_tokens >= IMAGE_TOKENS, "the image became tokens"
    upload = with_image.conversation.uploads.get()
    received = list(upload.deliveries.values_list("model", "provider"))
    assert received == [(vision_model.model_id, Provider.LOCAL)]
    assert cloud_vision.requests == []


def test_a_local_chat_offers_only_the_local_models_that_see_images(
    user, conversation, vision_model, cloud_vision
):
    services.message_send(conversation=conversation, content="Hello")  # it stays on this instance now
    Message.objects.filter(conversation=conversation).update(status=MessageStatus.DONE)
    image = upload_save(owner=user, conversation=conversation, file=uploaded("photo.png"))
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Describe it", upload_ids=[image.pk])
    assert refused.value.code == "no_vision"
    assert refused.value.message == (
        "SmolLM2 135M Instruct cannot look at images, and this conversation stays on this instance. "
        "Local models that can: Tiny Vision (This instance)."
    )
    assert cloud_vision.requests == []

    services.message_send(
        conversation=conversation,
        content="Describe it",
        model_id=vision_model.model_id,
        upload_ids=[image.pk],
    )
    image.refresh_from_db()
    assert image.message is not None and image.message.model == vision_model.model_id


def test_a_new_chat_names_the_local_and_the_cloud_models_that_see_images(
    user, conversation, vision_model, cloud_vision
):
    image = upload_save(owner=user, conversation=conversation, file=uploaded("photo.png"))
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Describe it", upload_ids=[image.pk])
    assert refused.value.message == (
        "SmolLM2 135M Instruct cannot look at images. "
        "Models that can: Tiny Vision (This instance), Echo Vision (Seer)."
    )


def test_without_a_local_model_that_sees_images_a_local_chat_says_how_to_get_one(user, conversation):
    services.message_send(conversation=conversation, content="Hello")
    Message.objects.filter(conversation=conversation).update(status=MessageStatus.DONE)
    image = upload_save(owner=user, conversation=conversation, file=uploaded("photo.png"))
    with pytest.raises(Refusal) as refused:
        services.message_send(conversation=conversation, content="Describe it", upload_ids=[image.pk])
    assert "stays on this instance" in refused.value.message
    assert "install one that sees images from the model hub" in refused.value.message
    image.refresh_from_db()
    assert image.message is None, "it stays in the composer, to send once such a model is installed"

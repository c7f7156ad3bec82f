"""Images from prompts: the unpatched openai and google-genai SDKs against our loopback image
provider (real PNGs, real failures), kept privately, counted, exported and erased."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from accounts.models import InstanceSettings
from billing.models import Plan
from billing.services import plan_assign
from chat import services
from chat.models import (
    CloudModel,
    CloudProvider,
    CloudProviderKind,
    GeneratedImage,
    ImageGeneration,
    ImageStatus,
    Upload,
)
from localai_site.core.privacy import user_erase, user_export
from localai_site.core.refusals import Refusal
from tests.servers import API_KEY, GEMINI_IMAGE_MODEL, ImageProviderFake

pytestmark = pytest.mark.django_db

OPENAI = "cloud:oai/gpt-image-1"
GEMINI = f"cloud:gem/{GEMINI_IMAGE_MODEL}"
CUSTOM = "cloud:sd/gpt-image-1-mini"


@pytest.fixture(scope="module")
def image_server():
    server = ImageProviderFake(slow_s=3)
    yield server
    server.stop()


def _provider(slug: str, kind: str, base_url: str, model: str, api_key: str = API_KEY) -> CloudProvider:
    provider = services.cloud_provider_save(
        provider=CloudProvider(slug=slug, name=slug.upper(), kind=kind, base_url=base_url), api_key=api_key
    )
    CloudModel.objects.create(provider=provider, name=model, enabled=True, makes_images=True)
    return provider


@pytest.fixture
def image_providers(db, image_server):
    image_server.requests.clear()
    _provider("oai", CloudProviderKind.OPENAI, image_server.base_url, "gpt-image-1")
    _provider("gem", CloudProviderKind.GEMINI, image_server.gemini_base_url, GEMINI_IMAGE_MODEL)
    _provider("sd", CloudProviderKind.CUSTOM, image_server.base_url, "gpt-image-1-mini")
    return image_server


def _made(user, model_id: str, prompt: str = "a lighthouse at dusk", **options) -> ImageGeneration:
    """A generation started and run by the worker's code, as the task would."""
    generation = services.image_generation_start(owner=user, model_id=model_id, prompt=prompt, **options)
    services.image_generation_run(generation_id=generation.pk)
    generation.refresh_from_db()
    return generation


def _opened(image: GeneratedImage) -> Image.Image:
    with image.file.open("rb") as handle:
        decoded = Image.open(BytesIO(handle.read()))
        decoded.load()
        return decoded


def test_discovery_marks_the_image_models_and_lets_the_admin_add_one(db, image_server):
    provider = services.cloud_provider_save(
        provider=CloudProvider(
            slug="found", name="Found", kind=CloudProviderKind.OPENAI, base_url=image_server.base_url
        ),
        api_key=API_KEY,
    )
    services.cloud_models_discover(provider=provider)
    makes = dict(provider.models.values_list("name", "makes_images"))
    assert makes == {
        "gpt-image-1": True,
        "gpt-image-1.5": True,
        "gpt-image-1-mini": True,
        "gpt-4o-mini": False,
    }
    gemini = services.cloud_provider_save(
        provider=CloudProvider(
            slug="g", name="G", kind=CloudProviderKind.GEMINI, base_url=image_server.gemini_base_url
        ),
        api_key=API_KEY,
    )
    services.cloud_models_discover(provider=gemini)
    assert gemini.models.get().makes_images


def test_openai_makes_the_images_asked_for_kept_re_encoded_and_private(user, image_providers, media):
    generation = _made(user, OPENAI, shape="landscape", quality="high", count=2, style="watercolour")
    assert generation.status == ImageStatus.DONE, generation.error
    assert (generation.provider, generation.model, generation.size) == ("oai", OPENAI, "1536x1024")
    sent = image_providers.requests[-1]
    assert sent["path"] == "/v1/images/generations"
    assert sent["fields"]["quality"] == "high" and sent["fields"]["n"] == 2
    assert sent["fields"]["prompt"] == "a lighthouse at dusk, as a watercolour painting"
    images = list(generation.images.all())
    assert len(images) == 2
    for image in images:
        decoded = _opened(image)
        assert decoded.size == (1536, 1024) == (image.width, image.height)
        assert "Software" not in decoded.info, "the provider's metadata is not kept"
        assert user.email not in image.file.name and "lighthouse" not in image.file.name
        assert Path(image.file.path).is_relative_to(media)


def test_gemini_makes_an_image_through_generate_content(user, image_providers):
    generation = _made(user, GEMINI, shape="landscape")
    assert generation.status == ImageStatus.DONE, generation.error
    assert generation.size == "3:2"
    sent = image_providers.requests[-1]
    assert sent["path"].endswith(f"/models/{GEMINI_IMAGE_MODEL}:generateContent")
    assert sent["fields"]["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert _opened(generation.images.get()).size == (192, 128)


def test_an_openai_compatible_endpoint_is_asked_for_base64(user, image_providers):
    generation = _made(user, CUSTOM)
    assert generation.status == ImageStatus.DONE, generation.error
    assert image_providers.requests[-1]["fields"]["response_format"] == "b64_json"


def _mask_for(image: GeneratedImage) -> SimpleUploadedFile:
    mask = Image.new("RGBA", (image.width, image.height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, image.width // 2, image.height // 2))  # the part to change
    out = BytesIO()
    mask.save(out, "PNG")
    return SimpleUploadedFile("mask.png", out.getvalue(), "image/png")


@pytest.mark.parametrize("model_id", [OPENAI, GEMINI])
def test_an_edit_with_a_painted_mask_is_a_new_version_of_its_source(user, image_providers, model_id):
    source = _made(user, model_id).images.get()
    edit = _made(user, model_id, prompt="add a red boat", source=source, mask=_mask_for(source))
    assert edit.status == ImageStatus.DONE, edit.error
    assert edit.source == source and edit.sent_image
    assert list(source.edits.all()) == [edit]
    sent = image_providers.requests[-1]
    if model_id == OPENAI:
        assert sent["path"] == "/v1/images/edits"
        assert len(sent["files"]["image"]) == 1 and len(sent["files"]["mask"]) == 1
    else:
        assert len(sent["files"]["image"]) == 2, "the image and its mask"
    assert not edit.mask, "the mask is kept only until the provider has it"
    assert not list(Path(settings.MEDIA_ROOT, "images", "masks").glob("*"))


def test_a_mask_of_another_size_is_refused(user, image_providers):
    source = _made(user, OPENAI).images.get()
    wrong = Image.new("RGBA", (10, 10))
    out = BytesIO()
    wrong.save(out, "PNG")
    with pytest.raises(Refusal, match="does not match"):
        services.image_generation_start(
            owner=user,
            model_id=OPENAI,
            prompt="x",
            source=source,
            mask=SimpleUploadedFile("m.png", out.getvalue()),
        )


@pytest.mark.parametrize("model_id", [OPENAI, GEMINI])
@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("please refuse this", "refused the prompt under its content policy"),
        ("busy now", "limiting requests"),
        ("slow one", "did not answer in time"),
        ("broken body", "broke off"),
        ("garbage out", "sent something that is not an image"),
    ],
)
def test_each_failure_is_said_plainly_and_keeps_nothing(
    user, image_providers, settings, model_id, prompt, words
):
    settings.IMAGE_TIMEOUT_S = 1
    generation = _made(user, model_id, prompt=prompt)
    assert generation.status == ImageStatus.FAILED
    assert words in generation.error
    assert API_KEY not in generation.error
    assert not generation.images.exists()
    assert not list(Path(settings.MEDIA_ROOT).rglob("*.png"))


def test_a_local_only_account_and_an_instance_without_cloud_get_no_image_generation(
    user, other_user, image_providers
):
    user.local_only = True
    user.save()
    assert services.image_models_offered(user=user) == []
    with pytest.raises(Refusal) as refused:
        services.image_generation_start(owner=user, model_id=OPENAI, prompt="a cat")
    assert refused.value.code == "local_only"
    InstanceSettings.objects.update(cloud_enabled=False)
    with pytest.raises(Refusal) as refused:
        services.image_generation_start(owner=other_user, model_id=OPENAI, prompt="a cat")
    assert refused.value.code == "cloud_off"
    assert not ImageGeneration.objects.exists()


def test_a_chat_model_does_not_make_images(user, image_providers):
    CloudModel.objects.create(
        provider=CloudProvider.objects.get(slug="oai"), name="gpt-4o-mini", enabled=True
    )
    with pytest.raises(Refusal, match="does not make images. Models that do:"):
        services.image_generation_start(owner=user, model_id="cloud:oai/gpt-4o-mini", prompt="a cat")


def test_images_count_against_the_plan_and_the_refusal_says_when_they_reset(user, image_providers):
    plan = Plan.objects.get(slug="free")
    plan.image_generations_per_month = 3
    plan.save()
    plan_assign(user=user, plan=plan)
    services.image_generation_start(owner=user, model_id=OPENAI, prompt="one", count=2)
    with pytest.raises(Refusal) as refused:
        services.image_generation_start(owner=user, model_id=OPENAI, prompt="two", count=2)
    assert refused.value.code == "quota_exceeded"
    assert "They reset at" in refused.value.message
    assert ImageGeneration.objects.filter(owner=user).count() == 1, "the refused request kept nothing"


def test_only_the_owner_sees_or_downloads_an_image(client, user, other_user, image_providers):
    image = _made(user, OPENAI).images.get()
    client.force_login(other_user)
    for name in ("chat:image", "chat:image_download", "chat:image_edit"):
        assert client.get(reverse(name, args=[image.pk])).status_code == 404
    assert client.post(reverse("chat:image_delete", args=[image.pk])).status_code == 404
    client.force_login(user)
    shown = client.get(reverse("chat:image", args=[image.pk]))
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert "sandbox" in shown["Content-Security-Policy"]
    webp = client.get(reverse("chat:image_download", args=[image.pk]) + "?format=webp")
    assert webp["Content-Disposition"].startswith("attachment") and webp["Content-Type"] == "image/webp"
    assert Image.open(BytesIO(webp.content)).format == "WEBP"


def test_the_gallery_says_who_will_receive_the_prompt_and_shows_the_results(client, user, image_providers):
    generation = _made(user, OPENAI, prompt="a quiet harbour")
    client.force_login(user)
    page = client.get(reverse("chat:gallery")).content.decode()
    # The first model offered is selected; the page names its provider (gallery.js follows the choice).
    assert 'Your prompt goes to <strong id="image-recipient">GEM</strong>' in page
    assert f'value="{OPENAI}" data-provider="OAI"' in page
    assert "a quiet harbour" in page and "sent to oai" in page
    assert reverse("chat:image", args=[generation.images.get().pk]) in page
    status = client.get(reverse("chat:generation_status", args=[generation.pk])).json()
    assert status["status"] == "done" and not status["active"]


def test_generating_from_the_page_queues_it_and_a_refusal_keeps_the_prompt(client, user, image_providers):
    client.force_login(user)
    answer = client.post(reverse("chat:gallery"), {"prompt": "a fox", "model": OPENAI, "shape": "portrait"})
    assert answer.status_code == 302
    generation = ImageGeneration.objects.get(owner=user)
    assert generation.size == "1024x1536"
    refused = client.post(reverse("chat:gallery"), {"prompt": "a fox", "model": OPENAI, "count": 9})
    assert refused.status_code == 400 and "Ask for 1 to 4 images" in refused.content.decode()
    assert "a fox</textarea>" in refused.content.decode()


def test_deleting_one_or_all_images_removes_their_files(
    user, image_providers, django_capture_on_commit_callbacks
):
    first = _made(user, OPENAI, count=2)
    second = _made(user, OPENAI)
    one, other = first.images.all()
    with django_capture_on_commit_callbacks(execute=True):
        services.generated_image_delete(image=one)
    assert not Path(one.file.path).exists() and Path(other.file.path).exists()
    assert ImageGeneration.objects.filter(pk=first.pk).exists(), "its other image keeps the prompt"
    with django_capture_on_commit_callbacks(execute=True):
        assert services.generated_images_clear(user=user) == 2
    assert not ImageGeneration.objects.filter(owner=user).exists()
    assert not list(Path(settings.MEDIA_ROOT).rglob("*.png"))
    assert second.pk


def test_use_in_chat_attaches_a_copy_to_a_conversation(client, user, other_user, image_providers):
    image = _made(user, OPENAI).images.get()
    conversation = services.conversation_create(
        owner=user, model_id=OPENAI.replace("gpt-image-1", "gpt-image-1")
    )
    client.force_login(user)
    answer = client.post(
        reverse("chat:image_to_chat", args=[image.pk]), {"conversation": str(conversation.pk)}
    )
    upload = Upload.objects.get(owner=user)
    assert answer["Location"] == reverse("chat:conversation", args=[conversation.pk]) + f"?attach={upload.pk}"
    assert upload.conversation == conversation and upload.message is None and upload.is_image
    composer = client.get(answer["Location"]).content.decode()
    assert f'<input type="hidden" name="uploads" value="{upload.pk}">' in composer
    client.force_login(other_user)
    elsewhere = client.get(reverse("chat:home") + f"?attach={upload.pk}").content.decode()
    assert str(upload.pk) not in elsewhere, "nobody else's files are attached"


def test_export_has_the_prompts_the_images_and_who_received_them_and_erasure_removes_them(
    user, image_providers, tmp_path, django_capture_on_commit_callbacks
):
    generation = _made(user, OPENAI, prompt="a map of the coast")
    image = generation.images.get()
    archive_path = tmp_path / "export.zip"
    user_export(user=user, destination=archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        prompts = json.loads(archive.read("image_prompts.json"))
        assert prompts[0]["prompt"] == "a map of the coast" and prompts[0]["provider"] == "oai"
        assert f"files/{image.file.name}" in archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["image_recipients"][0]["recipient"] == "oai"
    path = Path(image.file.path)
    with django_capture_on_commit_callbacks(execute=True):
        receipt = user_erase(user=user)
    assert receipt["chat.GeneratedImage"] == 1 and receipt["chat.ImageGeneration"] == 1
    assert not path.exists()


def test_settings_privacy_lists_the_images_and_deletes_them(client, user, image_providers):
    image = _made(user, OPENAI, prompt="a garden in the rain").images.get()
    client.force_login(user)
    page = client.get(reverse("accounts:privacy")).content.decode()
    assert "Your generated images" in page and "a garden in the rain" in page
    answer = client.post(reverse("chat:image_delete", args=[image.pk]), {"next": "privacy"})
    assert answer["Location"] == reverse("accounts:privacy") + "#images"
    assert not GeneratedImage.objects.filter(pk=image.pk).exists()


def test_slash_image_in_a_cloud_chat_makes_the_image_inline_and_in_the_gallery(
    client, user, image_providers, local_model
):
    chat_model = CloudModel.objects.create(
        provider=CloudProvider.objects.get(slug="oai"), name="gpt-4o-mini", enabled=True
    )
    conversation = services.conversation_create(owner=user, model_id=chat_model.model_id)
    user_message, reply = services.chat_message_send(conversation=conversation, content="/image a red kite")
    assert (user_message.content, reply.status, reply.provider) == ("/image a red kite", "queued", "oai")
    generation = ImageGeneration.objects.get(message=reply)
    assert generation.prompt == "a red kite" and generation.model == OPENAI
    services.image_generation_run(generation_id=generation.pk)
    reply.refresh_from_db()
    assert reply.status == "done"
    shown = reply.attachments.get()
    assert shown.is_image and not shown.deliveries.exists()  # made by the provider, sent to none yet
    client.force_login(user)
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert reverse("chat:upload_image", args=[shown.pk]) in page
    assert GeneratedImage.objects.filter(generation=generation).exists(), "it is in the gallery too"

    local = services.conversation_create(owner=user, model_id=local_model.model_id)
    services.message_send(conversation=local, content="Hello")
    local.messages.update(status="done")  # as if the local model had answered
    with pytest.raises(Refusal) as refused:
        services.chat_message_send(conversation=local, content="/image a cat", model_id=chat_model.model_id)
    assert refused.value.code == "image_local" and "stays on this instance" in refused.value.message


def test_slash_image_fails_the_reply_with_the_providers_reason(user, image_providers):
    chat_model = CloudModel.objects.create(
        provider=CloudProvider.objects.get(slug="oai"), name="gpt-4o-mini", enabled=True
    )
    conversation = services.conversation_create(owner=user, model_id=chat_model.model_id)
    _, reply = services.chat_message_send(conversation=conversation, content="/image please refuse this")
    services.image_generation_run(generation_id=ImageGeneration.objects.get(message=reply).pk)
    reply.refresh_from_db()
    assert reply.status == "failed" and "content policy" in reply.error


def test_regenerating_an_image_reply_makes_a_new_image_and_an_edit_to_image_makes_one(user, image_providers):
    chat_model = CloudModel.objects.create(
        provider=CloudProvider.objects.get(slug="oai"), name="gpt-4o-mini", enabled=True
    )
    conversation = services.conversation_create(owner=user, model_id=chat_model.model_id)
    asked, first = services.chat_message_send(conversation=conversation, content="/image a red kite")
    services.image_generation_run(generation_id=ImageGeneration.objects.get(message=first).pk)

    again = services.chat_reply_regenerate(conversation=conversation, message_id=first.pk)
    assert not conversation.messages.filter(pk=first.pk).exists()
    generation = ImageGeneration.objects.get(message=again)
    assert (generation.prompt, generation.model, again.provider) == ("a red kite", OPENAI, "oai")
    assert ImageGeneration.objects.filter(owner=user).count() == 2, "the first image stays in the gallery"
    services.image_generation_run(generation_id=generation.pk)
    again.refresh_from_db()
    assert again.status == "done" and again.attachments.get().is_image

    edited = services.chat_message_edit(
        conversation=conversation, message_id=asked.pk, content="/image  a blue kite "
    )
    asked.refresh_from_db()
    assert asked.content == "/image a blue kite"
    assert list(conversation.messages.values_list("pk", flat=True)) == [asked.pk, edited.pk]
    assert ImageGeneration.objects.get(message=edited).prompt == "a blue kite"
    services.image_generation_run(generation_id=ImageGeneration.objects.get(message=edited).pk)

    # Back to words: the edited message is answered by the chat model, not the image model.
    answered = services.chat_message_edit(conversation=conversation, message_id=asked.pk, content="Hello")
    assert (answered.model, answered.status) == (chat_model.model_id, "queued")
    assert not ImageGeneration.objects.filter(message=answered).exists()


def test_the_openai_seam_sends_reference_images_with_the_one_to_edit(db, image_providers):
    from chat.providers.images import ImageRequest, image_provider_for
    from tests.servers import png_bytes

    provider = image_provider_for(CloudModel.objects.get(name="gpt-image-1"))
    request = ImageRequest(
        prompt="put the cat from the second picture on the sofa",
        image=png_bytes(64, 64),
        references=(png_bytes(32, 32, "orange"), png_bytes(32, 32, "grey")),
    )
    made = provider.images_make(request)
    assert len(made) == 1 and made[0].startswith(b"\x89PNG")
    sent = image_providers.requests[-1]
    assert sent["path"] == "/v1/images/edits" and len(sent["files"]["image"]) == 3
    assert "mask" not in sent["files"]


def test_an_uploaded_image_is_edited_into_the_gallery_by_its_owner_only(
    client, user, other_user, image_providers
):
    from tests.files import uploaded

    upload = services.upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    client.force_login(other_user)
    assert client.get(reverse("chat:upload_image_edit", args=[upload.pk])).status_code == 404
    client.force_login(user)
    page = client.get(reverse("chat:upload_image_edit", args=[upload.pk])).content.decode()
    assert reverse("chat:upload_image", args=[upload.pk]) in page and 'id="mask-canvas"' in page
    answer = client.post(
        reverse("chat:upload_image_edit", args=[upload.pk]), {"prompt": "make it night", "model": OPENAI}
    )
    generation = ImageGeneration.objects.get(owner=user)
    assert answer["Location"].endswith(f"#generation-{generation.pk}")
    assert generation.source_upload == upload and generation.sent_image and generation.shape == "square"
    services.image_generation_run(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == ImageStatus.DONE, generation.error
    assert image_providers.requests[-1]["path"] == "/v1/images/edits"


def test_a_failed_generation_gives_back_what_it_spent_of_the_plan(user, image_providers):
    plan = Plan.objects.get(slug="free")
    plan.image_generations_per_month = 2
    plan.save()
    plan_assign(user=user, plan=plan)
    assert _made(user, OPENAI, prompt="please refuse this", count=2).status == ImageStatus.FAILED
    assert _made(user, OPENAI, prompt="a calm lake", count=2).status == ImageStatus.DONE
    with pytest.raises(Refusal, match="They reset at"):
        services.image_generation_start(owner=user, model_id=OPENAI, prompt="one more")


def test_a_generation_whose_worker_went_away_says_so(client, user, image_providers, settings):
    from datetime import timedelta

    from django.utils import timezone

    generation = services.image_generation_start(owner=user, model_id=OPENAI, prompt="lost")
    ImageGeneration.objects.filter(pk=generation.pk).update(
        created_at=timezone.now() - timedelta(seconds=2 * settings.IMAGE_TIMEOUT_S + 61)
    )
    client.force_login(user)
    status = client.get(reverse("chat:generation_status", args=[generation.pk])).json()
    assert status["status"] == "failed" and "No worker finished" in status["html"]


def test_the_admin_lists_generations_without_their_prompts_and_deletes_them_with_their_files(
    client, admin, user, image_providers, django_capture_on_commit_callbacks
):
    generation = _made(user, OPENAI, prompt="my secret garden")
    image_file = generation.images.get().file
    assert image_file.storage.exists(image_file.name)
    client.force_login(admin)
    listed = client.get(reverse("admin:chat_imagegeneration_changelist")).content.decode()
    shown = client.get(reverse("admin:chat_imagegeneration_change", args=[generation.pk])).content.decode()
    assert str(generation.pk) in listed and "gpt-image-1" in shown
    assert "secret garden" not in listed + shown, "the prompt is the person's own"
    with django_capture_on_commit_callbacks(execute=True):  # the files go once it commits
        answer = client.post(
            reverse("admin:chat_imagegeneration_delete", args=[generation.pk]), {"post": "yes"}
        )
    assert answer.status_code == 302 and not ImageGeneration.objects.filter(pk=generation.pk).exists()
    assert not image_file.storage.exists(image_file.name)

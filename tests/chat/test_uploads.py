"""People's files: kept privately, checked on the way in, theirs alone, gone when deleted."""

from io import BytesIO
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from PIL import Image

from accounts.services import user_restrict
from chat.models import Conversation, Upload
from chat.services import conversation_delete, conversations_clear, upload_save
from localai_site.core.refusals import Refusal
from tests.files import (
    CAMERA,
    PDF,
    SAMPLES,
    decompression_bomb,
    image_bytes,
    pdf_document,
    photo_with_metadata,
    truncated_jpeg,
    uploaded,
)

pytestmark = pytest.mark.django_db


def _on_disk(upload: Upload) -> Path:
    return Path(settings.MEDIA_ROOT) / upload.file.name


def _stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


@pytest.mark.parametrize(("name", "expected"), [(name, kind) for name, (_, kind) in SAMPLES.items()])
def test_each_kind_we_take_is_kept_privately_under_a_random_name(user, conversation, media, name, expected):
    upload = upload_save(owner=user, conversation=conversation, file=uploaded(name))
    upload.refresh_from_db()
    assert upload.content_type == expected and upload.original_name == name
    assert upload.size == _on_disk(upload).stat().st_size and upload.conversation == conversation
    if upload.is_image:  # written again by us (below); the picture is the same
        with Image.open(_on_disk(upload)) as kept:
            assert (kept.format.lower(), kept.size) == (name.rsplit(".", 1)[1].replace("jpg", "jpeg"), (8, 8))
    else:
        assert _on_disk(upload).read_bytes() == SAMPLES[name][0]
    assert _on_disk(upload).is_relative_to(media / "uploads") and name not in upload.file.name


def test_the_bytes_decide_the_type_not_the_name_or_the_browser(user):
    upload = upload_save(owner=user, conversation=None, file=uploaded("scan.txt", PDF, "text/plain"))
    assert upload.content_type == "application/pdf" and upload.file.name.endswith(".pdf")


@pytest.mark.parametrize(
    ("name", "data", "code", "says"),
    [
        ("empty.txt", b"", "upload_empty", "“empty.txt” is empty."),
        (
            "tool.exe",
            b"MZ\x90\x00\x03\x00\x00\x00binary",
            "upload_type",
            "upload PDF, PNG, JPEG, WebP or plain",
        ),
        (
            "bundle.zip",
            b"PK\x03\x04" + bytes(range(256)),
            "upload_type",
            "“bundle.zip” is not a file we can take",
        ),
        ("latin1.txt", "café".encode("latin-1"), "upload_type", "not a file we can take"),
        (
            "broken.png",
            image_bytes("PNG")[:40],
            "upload_type",
            "“broken.png” looks like an image but is damaged",
        ),
        ("fake.webp", b"RIFF\x10\x00\x00\x00WEBPnot really", "upload_type", "damaged or incomplete"),
        ("cut.jpg", truncated_jpeg(), "upload_type", "“cut.jpg” looks like an image but is damaged"),
        (
            "locked.pdf",
            pdf_document(["secret"], password_protected=True),
            "upload_pdf_protected",
            "“locked.pdf” is protected by a password: attach a copy saved without one.",
        ),
        (
            "broken.pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 not a document",
            "upload_type",
            "looks like a PDF but is damaged",
        ),
        (
            "blank.pdf",
            pdf_document([]),
            "upload_type",
            "“blank.pdf” looks like a PDF but is damaged, incomplete",
        ),
        (
            "bomb.png",
            decompression_bomb(8_000),
            "upload_image_too_large",
            "“bomb.png” is 8000 × 8000 pixels; images up to 50 megapixels can be uploaded.",
        ),
    ],
)
def test_files_we_cannot_take_are_refused_with_a_reason_and_leave_nothing(
    user, media, name, data, code, says
):
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded(name, data))
    assert refused.value.code == code and says in refused.value.message
    assert not Upload.objects.exists() and _stored_files(media) == []


def test_a_pdf_longer_than_the_limit_is_refused_with_both_lengths(user, media, settings):
    settings.UPLOAD_PDF_MAX_PAGES = 3
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded("long.pdf", pdf_document(["p"] * 4)))
    assert refused.value.message == "“long.pdf” has 4 pages; PDFs of up to 3 pages can be uploaded."
    assert not Upload.objects.exists() and _stored_files(media) == []


def test_a_bomb_past_pillows_own_limit_is_refused_as_clearly(user, media, settings):
    settings.UPLOAD_IMAGE_MAX_PIXELS = 10**12  # ours out of the way: Pillow's refuses first
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded("huge.png", decompression_bomb(20_000)))
    assert refused.value.code == "upload_image_too_large"
    assert refused.value.message.startswith("“huge.png” decodes to too many pixels; images up to")
    assert not Upload.objects.exists() and _stored_files(media) == []


def test_a_photo_is_kept_upright_without_its_exif_or_gps(user):
    original = photo_with_metadata()
    assert CAMERA.encode() in original
    upload = upload_save(owner=user, conversation=None, file=uploaded("holiday.jpg", original))
    kept = _on_disk(upload).read_bytes()
    assert CAMERA.encode() not in kept and b"Exif" not in kept
    with Image.open(_on_disk(upload)) as image:
        assert image.size == (8, 16), "turned the way the camera was held"
        assert not image.getexif() and not image.getexif().get_ifd(0x8825)


def test_a_large_image_is_scaled_to_what_models_take_in(user, settings):
    settings.UPLOAD_IMAGE_MAX_SIDE = 64
    big = BytesIO()
    Image.new("RGB", (200, 100), "navy").save(big, "PNG")
    upload = upload_save(owner=user, conversation=None, file=uploaded("wide.png", big.getvalue()))
    with Image.open(_on_disk(upload)) as image:
        assert image.size == (64, 32)
    assert upload.size == _on_disk(upload).stat().st_size


def test_a_file_over_the_limit_is_refused_and_the_limit_is_said(user, media, settings):
    settings.UPLOAD_MAX_BYTES = 2 * 1024 * 1024
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded("big.txt", b"a" * (3 * 1024 * 1024)))
    assert refused.value.code == "upload_too_large"
    said = refused.value.message.replace("\xa0", " ")
    assert said == "“big.txt” is 3.0 MB; files up to 2.0 MB can be uploaded."
    assert not Upload.objects.exists() and _stored_files(media) == []


def test_folders_in_a_name_are_dropped(user):
    file = uploaded("a.txt", b"hi")
    file.name = "C:\\Users\\ann\\notes.txt"
    assert upload_save(owner=user, conversation=None, file=file).original_name == "notes.txt"


def test_nobody_files_into_someone_elses_conversation(other_user, conversation, media):
    with pytest.raises(Refusal) as refused:
        upload_save(owner=other_user, conversation=conversation, file=uploaded("notes.txt"))
    assert refused.value.code == "not_found" and _stored_files(media) == []


def test_a_restricted_account_cannot_add_files(user, media):
    user_restrict(user=user, restricted=True)
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded("notes.txt"))
    assert refused.value.code == "restricted" and _stored_files(media) == []


def test_only_the_owner_downloads_a_file_and_always_as_a_download(client, user, other_user):
    upload = upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    url = reverse("chat:upload_download", args=[upload.pk])
    assert client.get(url).status_code == 302  # signed out: to the sign-in page
    client.force_login(other_user)
    assert client.get(url).status_code == 404
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == SAMPLES["photo.png"][0]
    assert response["Content-Disposition"] == 'attachment; filename="photo.png"'
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"


def test_the_composer_stores_a_file_and_gets_its_id_or_the_reason(client, user, other_user, conversation):
    url = reverse("chat:upload_new")
    client.force_login(user)
    answer = client.post(url, {"file": uploaded("photo.png"), "conversation": str(conversation.pk)})
    assert answer.status_code == 201
    upload = Upload.objects.get(pk=answer.json()["id"])
    assert (upload.owner, upload.conversation, upload.message) == (user, conversation, None)
    assert answer.json()["image_url"] == reverse("chat:upload_image", args=[upload.pk])
    refused = client.post(url, {"file": uploaded("tool.exe", b"MZ\x90\x00binary")})
    assert refused.status_code == 400 and refused.json()["code"] == "upload_type"
    assert "“tool.exe” is not a file we can take" in refused.json()["error"]
    client.force_login(other_user)
    into_someone_elses = {"file": uploaded("notes.txt"), "conversation": str(conversation.pk)}
    assert client.post(url, into_someone_elses).status_code == 404
    assert Upload.objects.count() == 1


def test_an_image_is_shown_in_the_page_to_its_owner_only(client, user, other_user):
    image = upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    pdf = upload_save(owner=user, conversation=None, file=uploaded("report.pdf"))
    client.force_login(other_user)
    assert client.get(reverse("chat:upload_image", args=[image.pk])).status_code == 404
    client.force_login(user)
    shown = client.get(reverse("chat:upload_image", args=[image.pk]))
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert "attachment" not in shown.get("Content-Disposition", "")
    assert (
        shown["Content-Security-Policy"].startswith("default-src 'none'")
        and "sandbox" in shown["Content-Security-Policy"]
    )
    assert b"".join(shown.streaming_content) == _on_disk(image).read_bytes()
    assert client.get(reverse("chat:upload_image", args=[pdf.pk])).status_code == 404, "only images inline"


def test_a_chip_removed_in_the_composer_deletes_its_file(client, user, django_capture_on_commit_callbacks):
    upload = upload_save(owner=user, conversation=None, file=uploaded("notes.txt"))
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("chat:upload_delete", args=[upload.pk]), headers={"Accept": "application/json"}
        )
    assert response.status_code == 204 and not Upload.objects.exists() and not _on_disk(upload).exists()


def test_files_are_not_served_from_a_public_url(client, user):
    upload = upload_save(owner=user, conversation=None, file=uploaded("notes.txt"))
    client.force_login(user)
    assert client.get(f"{settings.MEDIA_URL}{upload.file.name}").status_code == 404


def test_the_owner_deletes_a_file_and_it_leaves_the_disk_once_committed(
    client, user, other_user, django_capture_on_commit_callbacks
):
    upload = upload_save(owner=user, conversation=None, file=uploaded("report.pdf"))
    url = reverse("chat:upload_delete", args=[upload.pk])
    client.force_login(other_user)
    assert client.post(url).status_code == 404 and _on_disk(upload).exists()
    client.force_login(user)
    assert client.get(url).status_code == 405
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, follow=True)
        assert _on_disk(upload).exists(), "the file waits for the commit"
    for callback in callbacks:
        callback()
    assert not _on_disk(upload).exists() and not Upload.objects.exists()
    assert "Deleted “report.pdf”." in response.content.decode()


def test_deleting_a_conversation_deletes_the_files_given_in_it_only(
    user, make_conversation, media, django_capture_on_commit_callbacks
):
    doomed, kept_conversation = make_conversation(user), make_conversation(user)
    in_doomed = upload_save(owner=user, conversation=doomed, file=uploaded("notes.txt"))
    elsewhere = upload_save(owner=user, conversation=kept_conversation, file=uploaded("photo.png"))
    loose = upload_save(owner=user, conversation=None, file=uploaded("report.pdf"))
    with django_capture_on_commit_callbacks(execute=True):
        conversation_delete(conversation=doomed)
    assert not _on_disk(in_doomed).exists() and not Upload.objects.filter(pk=in_doomed.pk).exists()
    assert _on_disk(elsewhere).exists() and _on_disk(loose).exists()
    assert set(Upload.objects.values_list("pk", flat=True)) == {elsewhere.pk, loose.pk}


def test_an_admin_deleting_a_conversation_deletes_its_files_too(
    client, user, make_user, conversation, django_capture_on_commit_callbacks
):
    upload = upload_save(owner=user, conversation=conversation, file=uploaded("notes.txt"))
    client.force_login(make_user("root@example.com", is_staff=True, is_superuser=True))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:chat_conversation_changelist"),
            {"action": "delete_selected", "_selected_action": [str(conversation.pk)], "post": "yes"},
        )
    assert not Conversation.objects.exists() and not _on_disk(upload).exists()


def test_clearing_local_history_deletes_its_files_and_keeps_cloud_ones(
    user, other_user, conversation, make_conversation, django_capture_on_commit_callbacks
):
    cloud = Conversation.objects.create(owner=user, model="cloud:openai/x", provider="openai")
    local_file = upload_save(owner=user, conversation=conversation, file=uploaded("notes.txt"))
    cloud_file = upload_save(owner=user, conversation=cloud, file=uploaded("photo.jpg"))
    bobs = upload_save(
        owner=other_user, conversation=make_conversation(other_user), file=uploaded("photo.webp")
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert conversations_clear(user=user, local=True) == 1
    assert not _on_disk(local_file).exists()
    assert _on_disk(cloud_file).exists() and _on_disk(bobs).exists()


def test_the_privacy_page_lists_ones_own_files_with_their_conversation(
    client, user, other_user, conversation
):
    conversation.title = "Tax questions"
    conversation.save()
    upload_save(owner=user, conversation=conversation, file=uploaded("report.pdf"))
    upload_save(owner=other_user, conversation=None, file=uploaded("notes.txt", b"bob's secret notes"))
    client.force_login(user)
    page = client.get(reverse("accounts:privacy")).content.decode()
    assert "report.pdf" in page and "Tax questions" in page and "notes.txt" not in page


def test_a_file_attached_but_never_sent_goes_after_a_day_and_a_sent_one_stays(
    user, conversation, media, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.retention import retention_enforce, retention_table
    from chat.models import Message, Role

    unsent = upload_save(owner=user, conversation=conversation, file=uploaded("photo.png"))
    sent = upload_save(owner=user, conversation=conversation, file=uploaded("report.pdf"))
    fresh = upload_save(owner=user, conversation=None, file=uploaded("notes.txt"))
    message = Message.objects.create(conversation=conversation, role=Role.USER, content="see the report")
    Upload.objects.filter(pk=sent.pk).update(message=message)
    two_days_ago = timezone.now() - timedelta(days=2)
    Upload.objects.filter(pk__in=[unsent.pk, sent.pk]).update(created_at=two_days_ago)

    with django_capture_on_commit_callbacks(execute=True):
        removed = retention_enforce()["unsent_uploads"]
    assert removed == 1
    assert set(Upload.objects.values_list("pk", flat=True)) == {sent.pk, fresh.pk}
    assert not _on_disk(unsent).exists() and _on_disk(sent).exists() and _on_disk(fresh).exists()
    assert {"record": "Files attached but never sent", "days": 1} in retention_table()

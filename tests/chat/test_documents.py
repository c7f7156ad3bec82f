"""PDFs and text files sent with a message: read page by page in a task, then in the prompt
whole when they fit, named with a notice when they do not."""

from pathlib import Path

import pytest

from chat import services
from chat.models import DocumentText, Message, MessageStatus, Upload
from chat.providers.cloud import OpenAICompatibleProvider
from chat.services import upload_document_read, upload_save
from tests.chat.conftest import make_cloud_provider
from tests.files import pdf_document, uploaded

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _read(upload: Upload) -> Upload:
    upload_document_read(upload_id=upload.pk)
    upload.refresh_from_db()
    return upload


def test_a_pdf_is_read_page_by_page_after_it_is_stored(user):
    upload = upload_save(
        owner=user,
        conversation=None,
        file=uploaded("plan.pdf", pdf_document(["Alpha page", "", "Gamma page"])),
    )
    assert (upload.page_count, upload.text_status) == (3, DocumentText.PENDING)
    upload = _read(upload)
    assert upload.text_status == DocumentText.READ
    assert [(page.number, page.text.strip()) for page in upload.pages.all()] == [
        (1, "Alpha page"),
        (2, ""),
        (3, "Gamma page"),
    ]
    upload_document_read(upload_id=upload.pk)  # a second run reads nothing again
    assert upload.pages.count() == 3


def test_a_pdf_without_a_text_layer_says_so(user):
    upload = _read(
        upload_save(owner=user, conversation=None, file=uploaded("scan.pdf", pdf_document(["", ""])))
    )
    assert upload.text_status == DocumentText.NO_TEXT and upload.page_count == 2


def test_a_500_page_pdf_is_read_whole(user):
    pages = [f"Page number {n} of the long one" for n in range(1, 501)]
    upload = _read(upload_save(owner=user, conversation=None, file=uploaded("long.pdf", pdf_document(pages))))
    assert upload.text_status == DocumentText.READ and upload.pages.count() == 500
    assert upload.pages.get(number=500).text.strip() == "Page number 500 of the long one"


def _sent_with(conversation, upload) -> Message:
    _, reply = services.message_send(conversation=conversation, content="Sum it up.", upload_ids=[upload.pk])
    return reply


def test_a_read_pdf_goes_to_the_model_after_the_message(user, conversation):
    upload = _read(
        upload_save(owner=user, conversation=None, file=uploaded("plan.pdf", pdf_document(["Alpha", "Beta"])))
    )
    reply = _sent_with(conversation, upload)
    (turn,) = services.history_of(reply=reply)
    assert turn.content == (
        "Sum it up.\n\n[Attached PDF “plan.pdf”, 2 pages]\n--- Page 1 ---\nAlpha\n\n--- Page 2 ---\nBeta"
    )


def test_a_text_file_goes_to_the_model_as_it_is(user, conversation):
    upload = upload_save(owner=user, conversation=None, file=uploaded("notes.txt"))
    (turn,) = services.history_of(reply=_sent_with(conversation, upload))
    assert turn.content == "Sum it up.\n\n[Attached text file “notes.txt”]\nGrüße – plain notes\n"


def test_a_pdf_still_being_read_is_named_with_what_is_missing(user, conversation):
    upload = upload_save(owner=user, conversation=None, file=uploaded("plan.pdf", pdf_document(["Alpha"])))
    (turn,) = services.history_of(reply=_sent_with(conversation, upload))
    assert turn.content.endswith(
        "[Attached PDF “plan.pdf”, 1 page: its text is still being read, so it is not included yet.]"
    )


def test_a_pdf_too_long_for_the_context_is_named_with_a_notice_never_cut(user):
    provider = make_cloud_provider("seer", "http://127.0.0.1:1/v1", "sk-test-seer-123456", "echo")
    conversation = services.conversation_create(owner=user, model_id="cloud:seer/echo")
    long_pdf = pdf_document([f"Chapter {n}: " + "words " * 200 for n in range(40)])
    upload = _read(upload_save(owner=user, conversation=None, file=uploaded("book.pdf", long_pdf)))
    reply = _sent_with(conversation, upload)
    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.QUEUED)
    prompt = services.prompt_build(
        reply=reply, provider=OpenAICompatibleProvider(provider, "echo"), context_length=2048, max_tokens=256
    )
    (turn,) = prompt.turns
    assert turn.content == (
        "Sum it up.\n\n[Attached PDF “book.pdf”, 40 pages: too long for this model's context, "
        "so its text is left out; say so if asked about it]"
    )
    wide = services.prompt_build(
        reply=reply,
        provider=OpenAICompatibleProvider(provider, "echo"),
        context_length=100_000,
        max_tokens=256,
    )
    assert "Chapter 39: words" in wide.turns[0].content

"""PDFs and text files sent with a message: checked and read page by page in a child process
(scans by the real Tesseract), a crash or hang there costing that file only; then in the prompt
whole when they fit, as the pages most relevant to the question when they do not (ranked by
SQLite FTS5, and PostgreSQL's full-text search in the ``postgres`` pass), named with a notice
when no page fits or matches."""

from io import BytesIO

import pytest

from chat import documents, services
from chat.display import message_display
from chat.models import CloudModel, DocumentText, Message, MessageStatus, Upload, UploadPage
from chat.providers.cloud import OpenAICompatibleProvider
from chat.services import upload_document_read, upload_save
from localai_site.core.refusals import Refusal
from tests import faults
from tests.chat.conftest import make_cloud_provider
from tests.files import pdf_document, scanned_pdf, uploaded

pytestmark = pytest.mark.django_db


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
        upload_save(owner=user, conversation=None, file=uploaded("blank.pdf", pdf_document(["", ""])))
    )
    assert upload.text_status == DocumentText.NO_TEXT and upload.page_count == 2
    assert upload.pages.filter(ocr=True).count() == 0, "blank pages hold no image to read"


SCANNED = ["INVOICE 4711", "Total due: 250 EUR"]


def _card(upload: Upload) -> str:
    """The message ``upload`` was sent with, as the conversation page shows it."""
    from django.template.loader import render_to_string

    message = Message.objects.get(attachments=upload)
    return render_to_string("chat/message.html", {"message": message, "display": message_display(message)})


def test_a_scanned_pdf_is_read_by_ocr_and_says_so(user, conversation):
    upload = _read(
        upload_save(owner=user, conversation=None, file=uploaded("scan.pdf", scanned_pdf(SCANNED)))
    )
    assert upload.text_status == DocumentText.READ and upload.ocr_pages == 1
    (page,) = upload.pages.all()
    assert page.ocr and "INVOICE 4711" in page.text and "250 EUR" in page.text, page.text
    (turn,) = services.history_of(reply=_sent_with(conversation, upload))
    assert "--- Page 1 (scanned, read by OCR) ---\nINVOICE 4711" in turn.content
    assert "1 page · " in _card(upload) and " · scanned, read by OCR</span>" in _card(upload)


def test_a_pdf_partly_scanned_says_how_many_pages_ocr_read():
    from chat.display import upload_reading

    partly = Upload(content_type="application/pdf", page_count=12, text_status=DocumentText.READ, ocr_pages=3)
    assert upload_reading(partly) == "3 scanned pages read by OCR"


def test_without_ocr_a_scanned_pdf_says_it_has_no_text_and_why(user, conversation, settings):
    settings.TESSERACT_COMMAND = ""  # as on an instance without tesseract-ocr
    upload = _read(
        upload_save(owner=user, conversation=None, file=uploaded("scan.pdf", scanned_pdf(SCANNED)))
    )
    assert upload.text_status == DocumentText.NO_OCR and upload.ocr_pages == 0
    (turn,) = services.history_of(reply=_sent_with(conversation, upload))
    assert turn.content.endswith(
        "[Attached PDF “scan.pdf”, 1 page: it is scanned, without a text layer, and OCR is not "
        "installed here to read it.]"
    )
    assert "scanned, no text: OCR is not installed here" in _card(upload)


def test_without_ocr_the_scanned_pages_of_a_mixed_pdf_are_named_not_silently_empty(
    user, conversation, settings
):
    import pypdfium2 as pdfium

    settings.TESSERACT_COMMAND = ""
    mixed = pdfium.PdfDocument(pdf_document(["The typed introduction"]))
    mixed.import_pages(pdfium.PdfDocument(scanned_pdf(SCANNED)))
    out = BytesIO()
    mixed.save(out)
    upload = _read(upload_save(owner=user, conversation=None, file=uploaded("mixed.pdf", out.getvalue())))
    assert upload.text_status == DocumentText.READ and upload.unread_scans == 1
    (turn,) = services.history_of(reply=_sent_with(conversation, upload))
    assert "[Attached PDF “mixed.pdf”, 2 pages; 1 scanned page in it could not be read" in turn.content
    assert "The typed introduction" in turn.content
    assert "1 scanned page not read: OCR is not installed here" in _card(upload)


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


def test_a_pdf_check_that_crashes_its_child_is_refused_and_the_next_upload_works(user, media, monkeypatch):
    monkeypatch.setattr(documents, "pdf_open", faults.abort)  # as PDFium dying on a crafted file would
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded("crafted.pdf", pdf_document(["x"])))
    assert refused.value.code == "upload_unreadable"
    assert refused.value.message == (
        "Opening the PDF “crafted.pdf” stopped the program that reads it; nothing was kept."
    )
    assert not Upload.objects.exists() and not list(media.rglob("*.pdf"))
    monkeypatch.undo()
    assert upload_save(owner=user, conversation=None, file=uploaded("report.pdf")).page_count == 1


def test_an_image_check_that_hangs_is_stopped_at_the_time_limit(user, media, monkeypatch, settings):
    settings.DOCUMENT_TIMEOUT_SECONDS = 2
    monkeypatch.setattr(documents, "image_rewrite", faults.hang)
    with pytest.raises(Refusal) as refused:
        upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    assert refused.value.message == (
        "Opening the image “photo.png” took longer than 2 seconds and was stopped; nothing was kept."
    )
    assert not Upload.objects.exists()
    monkeypatch.undo()
    assert upload_save(owner=user, conversation=None, file=uploaded("photo.png")).is_image


@pytest.mark.parametrize("fault", [faults.abort_after_first_batch, faults.hang_after_first_batch])
def test_reading_that_crashes_or_hangs_fails_that_pdf_only_and_leaves_no_pages(
    user, monkeypatch, settings, fault
):
    settings.DOCUMENT_TIMEOUT_SECONDS = 2
    long = upload_save(owner=user, conversation=None, file=uploaded("long.pdf", pdf_document(["A"] * 60)))
    fine = upload_save(owner=user, conversation=None, file=uploaded("fine.pdf", pdf_document(["Beta"])))
    monkeypatch.setattr(documents, "pdf_pages_text", fault)  # its first 50 pages are saved by then
    long = _read(long)
    assert long.text_status == DocumentText.FAILED and not UploadPage.objects.filter(upload=long).exists()
    monkeypatch.undo()
    fine = _read(fine)
    assert fine.text_status == DocumentText.READ and fine.pages.get().text.strip() == "Beta"


def _book() -> bytes:
    """40 pages about the weather; giraffes come up on page 3, and most on pages 7 to 9."""
    weather = "The weather stayed mild and dry all week. " * 12
    pages = [f"Page {n}. {weather}" for n in range(1, 41)]
    pages[2] = f"Page 3. A giraffe was seen once. {weather}"
    for n in (7, 8, 9):
        pages[n - 1] = f"Page {n}. Giraffes eat acacia leaves; giraffes eat at night. {weather}"
    return pdf_document(pages)


def _asked(user, misbehaving_server, question: str, context_length: int) -> Message:
    make_cloud_provider("seer", misbehaving_server.base_url, "sk-test-seer-123456", "paced")
    CloudModel.objects.filter(name="paced").update(context_length=context_length)
    conversation = services.conversation_create(owner=user, model_id="cloud:seer/paced")
    book = _read(upload_save(owner=user, conversation=None, file=uploaded("book.pdf", _book())))
    _, reply = services.message_send(conversation=conversation, content=question, upload_ids=[book.pk])
    services.reply_generate(message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    return reply


@pytest.mark.postgres
def test_a_pdf_too_long_for_the_context_gives_the_pages_that_answer_the_question(
    user, misbehaving_server, settings
):
    settings.CHAT_MAX_TOKENS = 256
    reply = _asked(user, misbehaving_server, "What do giraffes eat?", context_length=2048)
    sent = misbehaving_server.requests[-1]["messages"][-1]["content"]
    assert sent.startswith(
        "What do giraffes eat?\n\n[Attached PDF “book.pdf”, 40 pages: too long for this model's context, "
        "so only pages 3, 7–9, the most relevant to the question, follow; say so if asked about the rest]\n"
        "--- Page 3 ---\nPage 3. A giraffe was seen once."
    )
    assert [n for n in range(1, 41) if f"--- Page {n} ---" in sent] == [3, 7, 8, 9]  # in page order
    assert reply.pages_used == "pages 3, 7–9 of book.pdf"
    assert "the model read only pages 3, 7–9 of book.pdf, the most relevant to the question" in (
        message_display(reply).context
    )


@pytest.mark.postgres
def test_when_only_some_relevant_pages_fit_the_best_ranked_ones_go(user, misbehaving_server, settings):
    settings.CHAT_MAX_TOKENS = 256
    reply = _asked(user, misbehaving_server, "What do giraffes eat?", context_length=1024)
    assert reply.pages_used == "pages 7–9 of book.pdf"  # page 3 names a giraffe but says less


@pytest.mark.postgres
def test_a_question_no_page_answers_names_the_pdf_with_a_notice(user, misbehaving_server, settings):
    settings.CHAT_MAX_TOKENS = 256
    reply = _asked(user, misbehaving_server, "Any zebras?", context_length=1024)
    assert reply.pages_used == ""
    assert misbehaving_server.requests[-1]["messages"][-1]["content"] == (
        "Any zebras?\n\n[Attached PDF “book.pdf”, 40 pages: too long for this model's context, "
        "so its text is left out; say so if asked about it]"
    )

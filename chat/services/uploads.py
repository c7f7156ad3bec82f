"""Files people give the instance: what each really is, judged from its bytes (the name and
the browser's word can lie), keeping it (images written again, PDFs opened and then read in
a task, both by ``chat.documents`` in a child process) or deleting it."""

from __future__ import annotations

import codecs
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, TypeVar

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from accounts.models import User
from billing.selectors import upload_limit_for
from chat import documents
from chat.models import IMAGE_TYPES, Conversation, DocumentText, Upload, UploadDelivery, UploadPage
from localai_site.core.children import ChildCrashed, ChildFailed, ChildPool, ChildTimedOut
from localai_site.core.files import files_delete_after_commit
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue

from .choice import restriction_check

READ_CHUNK = 64 * 1024
PAGES_PER_WRITE = 50  # a PDF's pages saved in one query
PDF = "application/pdf"
ALLOWED_KINDS = "PDF, PNG, JPEG, WebP or plain text (or a WebM or Ogg recording)"

# Leading bytes of each binary type we accept.
_SIGNATURES = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x1a\x45\xdf\xa3", "audio/webm"),  # EBML: Chromium's and Firefox's recordings
    (b"OggS", "audio/ogg"),
)
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
# Where PDFium and Pillow run: two files are checked or read at once, more wait their turn.
_engines = ChildPool(size=2)
T = TypeVar("T")


def _is_plain_text(file: UploadedFile) -> bool:
    """UTF-8 (a BOM allowed) without NUL bytes, checked chunk by chunk."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    file.seek(0)
    try:
        while chunk := file.read(READ_CHUNK):
            if b"\x00" in chunk:
                return False
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _in_child(fn: Callable[..., T], *args: Any, name: str, doing: str) -> T:
    """``fn(*args)`` run by ``chat.documents`` in a child process; a child that crashes or
    hangs on this file is a refusal for it alone."""
    timeout = settings.DOCUMENT_TIMEOUT_SECONDS
    try:
        return _engines.run(fn, *args, timeout=timeout)
    except ChildTimedOut:
        slow = f"{doing} “{name}” took longer than {timeout} seconds and was stopped; nothing was kept."
        raise Refusal("upload_unreadable", slow) from None
    except ChildCrashed:
        crashed = f"{doing} “{name}” stopped the program that reads it; nothing was kept."
        raise Refusal("upload_unreadable", crashed) from None


@dataclass(frozen=True, slots=True)
class KeptImage:
    """An image as we keep it: written again by us, with what it is."""

    file: ContentFile
    content_type: str
    width: int
    height: int


def _image_reencoded(file: File, content_type: str, name: str) -> KeptImage:
    """The image as ``documents.image_rewrite`` wrote it again (upright, without metadata, no
    larger than a vision model takes in), or the refusal of what it found."""
    limit = settings.UPLOAD_IMAGE_MAX_PIXELS
    too_large = f"images up to {limit // 1_000_000} megapixels can be uploaded"
    file.seek(0)
    rewritten = _in_child(
        documents.image_rewrite,
        file.read(),
        _PILLOW_FORMATS[content_type],
        limit,
        settings.UPLOAD_IMAGE_MAX_SIDE,
        name=name,
        doing="Opening the image",
    )
    if rewritten.problem == "too_large":
        size = f"{rewritten.width} × {rewritten.height} pixels"
        raise Refusal("upload_image_too_large", f"“{name}” is {size}; {too_large}.")
    if rewritten.problem == "bomb":
        raise Refusal("upload_image_too_large", f"“{name}” decodes to too many pixels; {too_large}.")
    if rewritten.problem:
        raise Refusal("upload_type", f"“{name}” looks like an image but is damaged or incomplete.")
    return KeptImage(ContentFile(rewritten.data, name=name), content_type, rewritten.width, rewritten.height)


def _pdf_page_count(file: UploadedFile, name: str) -> int:
    """How many pages a PDF has, once it opens whole and without a password."""
    source: bytes | str
    if hasattr(file, "temporary_file_path"):  # a large upload waits on disk: read there
        source = file.temporary_file_path()
    else:
        file.seek(0)
        source = file.read()
    opened = _in_child(documents.pdf_open, source, name=name, doing="Opening the PDF")
    if opened.problem == "protected":
        protected = f"“{name}” is protected by a password: attach a copy saved without one."
        raise Refusal("upload_pdf_protected", protected)
    if opened.problem:
        broken = f"“{name}” looks like a PDF but is damaged, incomplete or without pages."
        raise Refusal("upload_type", broken)
    if opened.pages > (limit := settings.UPLOAD_PDF_MAX_PAGES):
        too_long = f"“{name}” has {opened.pages} pages; PDFs of up to {limit} pages can be uploaded."
        raise Refusal("upload_pdf_too_long", too_long)
    return opened.pages


def upload_kind(file: UploadedFile) -> str:
    """The content type of ``file`` (images still to be decoded whole: ``_image_reencoded``);
    Refusal ``upload_type`` when it is none we keep."""
    file.seek(0)
    head = file.read(16)
    content_type = next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), None)
    if content_type is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        content_type = "image/webp"
    if content_type is None and _is_plain_text(file):
        content_type = "text/plain"
    file.seek(0)
    if content_type is None:
        raise Refusal("upload_type", f"“{file.name}” is not a file we can take: upload {ALLOWED_KINDS}.")
    return content_type


def image_reencode(*, file: UploadedFile, name: str) -> KeptImage:
    """An image that came from elsewhere (an image provider) kept as uploaded ones are: its
    type judged from its bytes, written again without metadata; Refusal ``upload_type`` (or
    ``upload_image_too_large``) when it is no image we keep."""
    content_type = upload_kind(file)
    if content_type not in IMAGE_TYPES:
        raise Refusal("upload_type", f"“{name}” is not a PNG, JPEG or WebP image.")
    return _image_reencoded(file, content_type, name)


def _upload_name(name: str | None) -> str:
    """The name as the person knows it, without folders or control characters."""
    cleaned = "".join(c for c in PurePath((name or "").replace("\\", "/")).name if c.isprintable())
    return cleaned[-255:] or "file"


def upload_save(*, owner: User, conversation: Conversation | None, file: UploadedFile) -> Upload:
    """Keep a file a person gives the instance, once its size and real type are checked.
    Refused files raise Refusal and leave nothing behind."""
    restriction_check(user=owner)
    if conversation is not None and conversation.owner_id != owner.pk:
        raise Refusal("not_found", "No such conversation of yours.")
    name = _upload_name(file.name)
    if not file.size:
        raise Refusal("upload_empty", f"“{name}” is empty.")
    limit = upload_limit_for(user=owner)  # the plan's, never above the instance's
    if file.size > limit:
        raise Refusal(
            "upload_too_large",
            f"“{name}” is {filesizeformat(file.size)}; files up to {filesizeformat(limit)} can be uploaded.",
        )
    content_type = upload_kind(file)
    kept: File = _image_reencoded(file, content_type, name).file if content_type in IMAGE_TYPES else file
    upload = Upload(
        owner=owner, conversation=conversation, original_name=name, content_type=content_type, size=kept.size
    )
    if content_type == PDF:
        upload.page_count = _pdf_page_count(file, name)
        upload.text_status = DocumentText.PENDING
    upload.file.save(name, kept, save=False)  # under a random name (chat.models.upload_path)
    try:
        upload.save()
    except BaseException:
        upload.file.delete(save=False)
        raise
    if content_type == PDF:
        transaction.on_commit(lambda: task_enqueue("chat.read_document", str(upload.pk), queue=Queue.DEFAULT))
    return upload


def _tesseract() -> str | None:
    """Tesseract's command, when OCR is installed here (Debian ``tesseract-ocr``)."""
    return shutil.which(settings.TESSERACT_COMMAND) if settings.TESSERACT_COMMAND else None


def upload_document_read(*, upload_id: uuid.UUID) -> None:
    """Read a PDF's text page by page into ``UploadPage`` rows, in the child process
    (``documents``), ``PAGES_PER_WRITE`` pages a job: a page without a text layer that holds
    an image is a scan, read by Tesseract when it is installed. Then say how it went on the
    upload; a child that crashes or hangs fails the reading and leaves no pages behind."""
    upload = Upload.objects.filter(pk=upload_id, text_status=DocumentText.PENDING).first()
    if upload is None:
        return  # deleted meanwhile, or read already
    path, timeout, tesseract = upload.file.path, settings.DOCUMENT_TIMEOUT_SECONDS, _tesseract()
    status, ocr_pages, scans_unread = DocumentText.NO_TEXT, 0, 0
    try:
        for start in range(0, upload.page_count or 0, PAGES_PER_WRITE):
            batch = []
            pages = _engines.run(
                documents.pdf_pages_text, path, start, start + PAGES_PER_WRITE, timeout=timeout
            )
            for index, page in enumerate(pages, start):
                text, ocr = page.text, False
                if page.scanned and tesseract:
                    # Tesseract gets the job's time less what rendering the page may take.
                    read = _engines.run(
                        documents.pdf_page_ocr, path, index, tesseract, timeout * 0.8, timeout=timeout
                    )
                    text, ocr = read or "", bool(read)
                scans_unread += page.scanned and not tesseract
                ocr_pages += ocr
                if text.strip():
                    status = DocumentText.READ
                batch.append(UploadPage(upload=upload, number=index + 1, text=text, ocr=ocr))
            UploadPage.objects.bulk_create(batch)
    except (ChildFailed, documents.ReadFailed):
        UploadPage.objects.filter(upload=upload).delete()
        status, ocr_pages = DocumentText.FAILED, 0
    if status == DocumentText.FAILED:
        scans_unread = 0
    elif status == DocumentText.NO_TEXT and scans_unread:
        status = DocumentText.NO_OCR
    Upload.objects.filter(pk=upload.pk).update(
        text_status=status, ocr_pages=ocr_pages, unread_scans=scans_unread
    )


def uploads_delivered(*, upload_ids: Sequence[uuid.UUID], model: str, provider: str) -> None:
    """Record that ``model`` of ``provider`` received these files in a prompt (once per model)."""
    UploadDelivery.objects.bulk_create(
        [UploadDelivery(upload_id=pk, model=model, provider=provider) for pk in dict.fromkeys(upload_ids)],
        ignore_conflicts=True,  # sent to this model before
    )


@transaction.atomic
def upload_delete(*, upload: Upload) -> None:
    files_delete_after_commit([upload.file])
    upload.delete()

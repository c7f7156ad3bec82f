"""Files people give the instance: what each really is, judged from its bytes (the name and
the browser's word can lie), keeping it (images written again, PDFs opened and then read in
a task) or deleting it."""

from __future__ import annotations

import codecs
import uuid
from io import BytesIO
from pathlib import PurePath

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from accounts.models import User
from billing.selectors import upload_limit_for
from chat.models import IMAGE_TYPES, Conversation, DocumentText, Upload, UploadPage
from localai_site.core.files import files_delete_after_commit
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue

from .choice import restriction_check

READ_CHUNK = 64 * 1024
PAGES_PER_WRITE = 50  # a PDF's pages saved in one query
PDF = "application/pdf"
ALLOWED_KINDS = "PDF, PNG, JPEG, WebP or plain text"

# Leading bytes of each binary type we accept.
_SIGNATURES = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_ENCODING: dict[str, dict] = {"image/jpeg": {"quality": 90}, "image/webp": {"quality": 90}}


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


def _image_reencoded(file: UploadedFile, content_type: str, name: str) -> ContentFile:
    """The image decoded whole and written again: upright (its EXIF orientation applied),
    without EXIF, GPS or any other metadata, and no larger than a vision model takes in.
    What is kept is what we wrote, never the bytes we were given."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # Pillow loads only for images

    limit = settings.UPLOAD_IMAGE_MAX_PIXELS
    too_large = f"images up to {limit // 1_000_000} megapixels can be uploaded"
    file.seek(0)
    try:
        with Image.open(file, formats=[_PILLOW_FORMATS[content_type]]) as image:
            # The header says how large it decodes: refused before a single pixel is decoded.
            if image.width * image.height > limit:
                size = f"{image.width} × {image.height} pixels"
                raise Refusal("upload_image_too_large", f"“{name}” is {size}; {too_large}.")
            image.load()  # a truncated file fails here, not half-way through the re-encoding
            upright = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:  # Pillow's own limit, met before ours can be read
        too_many = f"“{name}” decodes to too many pixels; {too_large}."
        raise Refusal("upload_image_too_large", too_many) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        damaged = f"“{name}” looks like an image but is damaged or incomplete."
        raise Refusal("upload_type", damaged) from None
    side = settings.UPLOAD_IMAGE_MAX_SIDE
    upright.thumbnail((side, side), Image.Resampling.LANCZOS)  # only ever shrinks
    if content_type == "image/jpeg" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    upright.info.clear()  # EXIF, XMP, text chunks: nothing of the original's metadata is written
    out = BytesIO()
    upright.save(out, _PILLOW_FORMATS[content_type], **_ENCODING.get(content_type, {}))
    return ContentFile(out.getvalue(), name=name)


def _pdf_page_count(file: UploadedFile, name: str) -> int:
    """How many pages a PDF has, once it opens whole and without a password."""
    import pypdfium2 as pdfium  # PDFium loads only for PDFs

    file.seek(0)
    try:
        pdf = pdfium.PdfDocument(file.read())
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            protected = f"“{name}” is protected by a password: attach a copy saved without one."
            raise Refusal("upload_pdf_protected", protected) from None
        # PDFium opens no PDF without pages either.
        broken = f"“{name}” looks like a PDF but is damaged, incomplete or without pages."
        raise Refusal("upload_type", broken) from None
    try:
        pages = len(pdf)
    finally:
        pdf.close()
    if pages > (limit := settings.UPLOAD_PDF_MAX_PAGES):
        too_long = f"“{name}” has {pages} pages; PDFs of up to {limit} pages can be uploaded."
        raise Refusal("upload_pdf_too_long", too_long)
    return pages


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
    kept: File = _image_reencoded(file, content_type, name) if content_type in IMAGE_TYPES else file
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


def upload_document_read(*, upload_id: uuid.UUID) -> None:
    """Read a PDF's text page by page into ``UploadPage`` rows (a page at a time in memory,
    whatever the length), then say how it went on the upload."""
    import pypdfium2 as pdfium

    upload = Upload.objects.filter(pk=upload_id, text_status=DocumentText.PENDING).first()
    if upload is None:
        return  # deleted meanwhile, or read already
    status = DocumentText.NO_TEXT
    try:
        pdf = pdfium.PdfDocument(upload.file.path)
    except pdfium.PdfiumError:
        status = DocumentText.FAILED  # opened when it was uploaded: the stored file changed
    else:
        try:
            batch: list[UploadPage] = []
            for index in range(len(pdf)):
                page = pdf[index]
                text_page = page.get_textpage()
                text = text_page.get_text_range().replace("\r\n", "\n").replace("\x00", "")
                text_page.close()
                page.close()
                if text.strip():
                    status = DocumentText.READ
                batch.append(UploadPage(upload=upload, number=index + 1, text=text))
                if len(batch) == PAGES_PER_WRITE:
                    UploadPage.objects.bulk_create(batch)
                    batch = []
            UploadPage.objects.bulk_create(batch)
        except pdfium.PdfiumError:
            status = DocumentText.FAILED
        finally:
            pdf.close()
    Upload.objects.filter(pk=upload.pk).update(text_status=status)


@transaction.atomic
def upload_delete(*, upload: Upload) -> None:
    files_delete_after_commit([upload.file])
    upload.delete()

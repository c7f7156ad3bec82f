"""Files people give the instance: what each really is, judged from its bytes (the name and
the browser's word can lie), and keeping or deleting it."""

from __future__ import annotations

import codecs
from pathlib import PurePath

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from accounts.models import User
from billing.selectors import upload_limit_for
from chat.models import Conversation, Upload
from localai_site.core.files import files_delete_after_commit
from localai_site.core.refusals import Refusal

from .choice import restriction_check

READ_CHUNK = 64 * 1024
ALLOWED_KINDS = "PDF, PNG, JPEG, WebP or plain text"

# Leading bytes of each binary type we accept.
_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


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


def _is_whole_image(file: UploadedFile, content_type: str) -> bool:
    from PIL import Image, UnidentifiedImageError  # Pillow loads only for images

    file.seek(0)
    try:
        with Image.open(file, formats=[_PILLOW_FORMATS[content_type]]) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def upload_kind(file: UploadedFile) -> str:
    """The content type of ``file``; Refusal ``upload_type`` when it is none we keep."""
    file.seek(0)
    head = file.read(16)
    content_type = next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), None)
    if content_type is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        content_type = "image/webp"
    if content_type in _PILLOW_FORMATS and not _is_whole_image(file, content_type):
        raise Refusal("upload_type", f"“{file.name}” looks like an image but is damaged or incomplete.")
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
    upload = Upload(
        owner=owner,
        conversation=conversation,
        original_name=name,
        content_type=upload_kind(file),
        size=file.size,
    )
    upload.file.save(name, file, save=False)  # under a random name (chat.models.upload_path)
    try:
        upload.save()
    except BaseException:
        upload.file.delete(save=False)
        raise
    return upload


@transaction.atomic
def upload_delete(*, upload: Upload) -> None:
    files_delete_after_commit([upload.file])
    upload.delete()

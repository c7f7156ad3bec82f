"""What a file really is, judged from its bytes: the name and the browser's word can lie."""

from __future__ import annotations

import codecs

from django.core.files.uploadedfile import UploadedFile

from localai_site.core.refusals import Refusal

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
    from PIL import Image, UnidentifiedImageError

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

"""Small, real files of each kind people upload, for tests that need them."""

from __future__ import annotations

from io import BytesIO

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def image_bytes(kind: str, colour: str = "teal") -> bytes:
    out = BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, kind)
    return out.getvalue()


SAMPLES = {
    "report.pdf": (PDF, "application/pdf"),
    "photo.png": (image_bytes("PNG"), "image/png"),
    "photo.jpg": (image_bytes("JPEG"), "image/jpeg"),
    "photo.webp": (image_bytes("WEBP"), "image/webp"),
    "notes.txt": ("Grüße – plain notes\n".encode(), "text/plain"),
}


def uploaded(name: str, data: bytes | None = None, content_type: str = "application/octet-stream"):
    """A file as Django hands it to a view; ``data`` defaults to the sample of that name."""
    if data is None:
        data, content_type = SAMPLES[name]
    return SimpleUploadedFile(name, data, content_type)

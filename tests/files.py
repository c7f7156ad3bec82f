"""Small, real files of each kind people upload, for tests that need them."""

from __future__ import annotations

from io import BytesIO

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def image_bytes(kind: str, colour: str = "teal") -> bytes:
    out = BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, kind)
    return out.getvalue()


CAMERA = "SecretCam 3000"  # in a photo's EXIF, with where it was taken


def photo_with_metadata() -> bytes:
    """A 16 × 8 JPEG its camera held sideways (EXIF orientation 6: shown turned 90°), with
    the camera's name and a GPS position in its EXIF."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = CAMERA  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}  # GPSInfo
    out = BytesIO()
    Image.new("RGB", (16, 8), "teal").save(out, "JPEG", exif=exif)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A photo cut off half-way, as an upload that broke off leaves it."""
    out = BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(out, "JPEG")
    return out.getvalue()[: len(out.getvalue()) // 2]


def decompression_bomb(side: int) -> bytes:
    """A PNG of a few kilobytes that decodes to ``side`` × ``side`` pixels."""
    out = BytesIO()
    Image.new("1", (side, side)).save(out, "PNG")
    return out.getvalue()


def pdf_document(pages: list[str], *, password_protected: bool = False) -> bytes:
    """A real PDF with the text of each page in Helvetica, a line per newline (a page of ""
    has no text, as a scan has none), written object by object with its cross-reference
    table. A protected one carries an encryption dictionary whose empty user password does
    not open it."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        page = "/Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
        objects.append(f"<< {page} /Contents {5 + 2 * i} 0 R >>".encode())
        lines = [
            line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.split("\n")
        ]
        shown = " T* ".join(f"({line}) Tj" for line in lines)  # T*: the next line, 14 pt lower
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1") if text else b""
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    if password_protected:
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R"
    if password_protected:
        trailer += f" /Encrypt {len(objects)} 0 R /ID [<{'ab' * 16}> <{'ab' * 16}>]"
    out += f"trailer\n{trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def scanned_pdf(lines: list[str]) -> bytes:
    """A one-page PDF as a scanner makes it: an image of ``lines`` in large black letters on
    white, and no text layer."""
    from PIL import ImageDraw, ImageFont

    page = Image.new("L", (1275, 1650), 255)  # a letter page at 150 dpi
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=56)
    for row, line in enumerate(lines):
        draw.text((110, 160 + 110 * row), line, fill=0, font=font)
    out = BytesIO()
    page.save(out, "PDF", resolution=150)
    return out.getvalue()


PDF = pdf_document(["Quarterly report: sales rose by a tenth."])

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

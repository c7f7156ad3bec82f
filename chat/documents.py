"""PDFs and images opened by their native engines (PDFium, Pillow, Tesseract), in a child process.

The engine, not the service: ``chat.services.uploads`` decides what a file may be and what the
person is told, and runs each function here in a supervised child (``localai_site.core.children``)
so that a decoder crashing or hanging on a crafted file costs that file only. What the engine
found comes back as data, a ``problem`` word where it refuses. Nothing of Django is imported:
the child is a bare interpreter.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from io import BytesIO

OCR_DPI = 300  # what Tesseract reads best; a letter page renders to 2550 × 3300 grey pixels


@dataclass(frozen=True)
class Rewritten:
    """An image decoded whole and written again; ``problem`` is "too_large" (its header's
    ``width`` × ``height`` is over the limit), "bomb" (Pillow's own limit) or "damaged"."""

    data: bytes = b""
    problem: str = ""
    width: int = 0
    height: int = 0


def image_rewrite(data: bytes, pillow_format: str, max_pixels: int, max_side: int) -> Rewritten:
    """The image upright (its EXIF orientation applied), without EXIF, GPS or any other
    metadata, and no longer than ``max_side``: what is kept is what we wrote."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data), formats=[pillow_format]) as image:
            # The header says how large it decodes: refused before a single pixel is decoded.
            if image.width * image.height > max_pixels:
                return Rewritten(problem="too_large", width=image.width, height=image.height)
            image.load()  # a truncated file fails here, not half-way through the re-encoding
            upright = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:  # Pillow's own limit, met before ours can be read
        return Rewritten(problem="bomb")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return Rewritten(problem="damaged")
    upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # only ever shrinks
    if pillow_format == "JPEG" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    upright.info.clear()  # EXIF, XMP, text chunks: nothing of the original's metadata is written
    out = BytesIO()
    upright.save(out, pillow_format, **({"quality": 90} if pillow_format in ("JPEG", "WEBP") else {}))
    return Rewritten(data=out.getvalue(), width=upright.width, height=upright.height)


@dataclass(frozen=True)
class Opened:
    """A PDF's page count; ``problem`` is "protected" (a password) or "broken" (damaged,
    incomplete or without pages: PDFium opens none of those)."""

    pages: int = 0
    problem: str = ""


def pdf_open(source: bytes | str) -> Opened:
    """``source``: the PDF's bytes, or the path of a file holding them."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        protected = getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD
        return Opened(problem="protected" if protected else "broken")
    try:
        return Opened(pages=len(pdf))
    finally:
        pdf.close()


class ReadFailed(Exception):
    """PDFium could not read a stored PDF it opened when it was uploaded: the file changed."""


def _pdf_stored(path: str):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise ReadFailed(str(exc)) from None


@dataclass(frozen=True)
class PageText:
    text: str
    scanned: bool = False  # no text, but an image: OCR may read it


def pdf_pages_text(path: str, start: int, stop: int) -> list[PageText]:
    """The text layer of pages ``start`` to ``stop`` (from 0, ``stop`` excluded), a page at a
    time in memory."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    pdf = _pdf_stored(path)
    try:
        read = []
        for index in range(start, min(stop, len(pdf))):
            page = pdf[index]
            text_page = page.get_textpage()
            text = text_page.get_text_range().replace("\r\n", "\n").replace("\x00", "")
            text_page.close()
            images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]) if not text.strip() else iter(())
            read.append(PageText(text=text, scanned=next(images, None) is not None))
            page.close()
        return read
    except pdfium.PdfiumError as exc:
        raise ReadFailed(str(exc)) from None
    finally:
        pdf.close()


def pdf_page_ocr(path: str, index: int, tesseract: str, timeout: float) -> str | None:
    """The words Tesseract reads on page ``index`` rendered by PDFium; None when it failed or
    took longer than ``timeout`` seconds."""
    pdf = _pdf_stored(path)
    try:
        page = pdf[index]
        image = page.render(scale=OCR_DPI / 72, grayscale=True).to_pil()
        page.close()
    finally:
        pdf.close()
    png = BytesIO()
    image.save(png, "PNG")
    # One thread: Tesseract's OpenMP threads cost more than they give on a page this size.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [tesseract, "stdin", "stdout", "--dpi", str(OCR_DPI)],
            input=png.getvalue(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    return (
        done.stdout.decode("utf-8", "replace").replace("\x0c", "").strip() if done.returncode == 0 else None
    )

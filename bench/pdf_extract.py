"""How fast does the app read a PDF's text, against pypdf, and does its memory stay flat?

- speed: one generated PDF of --pages pages (45 lines of words each, Helvetica) uploaded and
  read by the app (``upload_save``, then the ``chat.read_document`` task: PDFium in the
  supervised child process, 50 pages a job, every page written to the database), and read by
  pypdf's ``extract_text`` in this process, alternating pypdf and app (A B A B …) after a
  warm-up of each; medians of --runs.
  ``ratio`` = app pages/s / pypdf pages/s; ``same_words`` says both read the same words.
  ``pdfium_direct_pages_s`` is PDFium called in this process, without child or database.
- memory: the app reading a 50- and a 500-page PDF, each in a fresh process: the peak
  resident memory (VmHWM) of that process and of the child that reads. Flat: the 500-page
  peaks within ``--flat-mb`` of the 50-page ones.

    .venv/bin/python bench/pdf_extract.py [--pages 500] [--runs 5]

SQLite in a temporary data folder. One JSON line goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, log, median, report  # noqa: E402

WORDS = [
    *("the", "of", "and", "report", "sales", "quarter", "revenue", "growth", "market", "customer"),
    *("product", "team", "region", "annual", "budget", "forecast", "cost", "margin", "supplier"),
    *("contract", "delivery", "invoice", "risk", "plan", "review"),
]


def pdf_of(pages: int) -> bytes:
    from tests.files import pdf_document

    rng = random.Random(pages)
    return pdf_document(
        ["\n".join(" ".join(rng.choice(WORDS) for _ in range(13)) for _ in range(45)) for _ in range(pages)]
    )


def _peak_mb(pid: int) -> float:
    """The process's peak resident memory, from /proc (VmHWM, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def _app_read(user, file) -> tuple[float, object]:
    """Seconds from the upload of ``file`` to its text read: ``upload_save`` (type check, page
    count in the child) and the ``chat.read_document`` task it enqueues (in-process here)."""
    from chat.models import DocumentText, Upload
    from chat.services import upload_save

    started = time.perf_counter()
    upload = upload_save(owner=user, conversation=None, file=file)
    pending = Upload.objects.filter(pk=upload.pk, text_status=DocumentText.PENDING)
    while pending.exists():
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    upload.refresh_from_db()
    assert upload.text_status == DocumentText.READ, upload.text_status
    return seconds, upload.pk


def _pypdf_read(path: Path) -> tuple[float, str]:
    import pypdf

    started = time.perf_counter()
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
    return time.perf_counter() - started, text


def _pdfium_read(path: Path) -> float:
    import pypdfium2 as pdfium

    started = time.perf_counter()
    pdf = pdfium.PdfDocument(path)
    for index in range(len(pdf)):
        page = pdf[index]
        text_page = page.get_textpage()
        text_page.get_text_range()
        text_page.close()
        page.close()
    pdf.close()
    return time.perf_counter() - started


def _user():
    from accounts.models import User

    return User.objects.create_user(f"bench-{time.time_ns()}@example.com", "a long enough passphrase")


def memory_child(path: Path) -> dict:
    """In a fresh process: the PDF at ``path`` uploaded as a browser's large file arrives
    (on disk: Django's TemporaryUploadedFile) and read, then both peaks."""
    import os
    import shutil

    import django
    import psutil

    django.setup()
    from django.core.files.uploadedfile import TemporaryUploadedFile

    upload = TemporaryUploadedFile("bench.pdf", "application/pdf", path.stat().st_size, None)
    with path.open("rb") as source:
        shutil.copyfileobj(source, upload)
    _app_read(_user(), upload)
    # The reading child, idle now and kept (multiprocessing's resource tracker is the other).
    (child,) = [c for c in psutil.Process().children() if "resource_tracker" not in " ".join(c.cmdline())]
    return {"asking_peak_mb": _peak_mb(os.getpid()), "reading_peak_mb": _peak_mb(child.pid)}


def memory(pages: int, data_dir: Path, env: dict[str, str]) -> dict:
    path = data_dir / f"memory-{pages}.pdf"
    path.write_bytes(pdf_of(pages))
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the memory child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args, env: dict[str, str], data_dir: Path) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from chat.models import UploadPage
    from tests.files import uploaded

    user = _user()
    data = pdf_of(args.pages)
    path = data_dir / "bench.pdf"
    path.write_bytes(data)
    log(f"{args.pages} pages, {len(data) / 1e6:.1f} MB; warm-up")
    _pypdf_read(path)
    _app_read(user, uploaded("bench.pdf", data))  # starts the child and loads PDFium there
    pypdf_s, app_s, direct_s, same = [], [], [], True
    for index in range(args.runs):
        seconds, pypdf_text = _pypdf_read(path)
        pypdf_s.append(seconds)
        seconds, upload_id = _app_read(user, uploaded("bench.pdf", data))
        app_s.append(seconds)
        app_text = " ".join(UploadPage.objects.filter(upload_id=upload_id).values_list("text", flat=True))
        direct_s.append(_pdfium_read(path))
        same = same and sorted(pypdf_text.split()) == sorted(app_text.split())
        log(f"run {index + 1}: pypdf {pypdf_s[-1]:.2f}s, app {app_s[-1]:.2f}s, direct {direct_s[-1]:.2f}s")
    ratios = [pypdf / app for pypdf, app in zip(pypdf_s, app_s, strict=True)]  # pages/s app over pypdf
    small, large = memory(50, data_dir, env), memory(500, data_dir, env)
    log(f"memory: 50 pages {small}, 500 pages {large}")
    growth = max(large[key] - small[key] for key in small)
    return {
        "pages": args.pages,
        "runs": args.runs,
        "pypdf_pages_s": median([args.pages / s for s in pypdf_s]),
        "app_pages_s": median([args.pages / s for s in app_s]),
        "pdfium_direct_pages_s": median([args.pages / s for s in direct_s]),
        "ratio": median(ratios),
        "same_words": same,
        "peak_mb_50_pages": {key: round(value, 1) for key, value in small.items()},
        "peak_mb_500_pages": {key: round(value, 1) for key, value in large.items()},
        "peak_growth_mb": round(growth, 1),
        "flat": growth <= args.flat_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flat-mb", type=float, default=20.0)
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)), flush=True)
        return
    with bench_environment(None) as (data_dir, env):
        report(run(args, env, data_dir))


if __name__ == "__main__":
    main()

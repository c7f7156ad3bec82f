"""How long do a person's export and erasure take, and how much memory does the export need?

Builds a person with 10,000 messages (in 20 conversations) and 200 files of 100 MB in all
(PDF, PNG and plain text, incompressible but for the text, each saved through
chat.services.upload_save as an upload from the browser would be), and a second person
who must come out of it untouched. Then, each in a fresh child process:

- export: localai_site.core.privacy.user_export, the real streamed ZIP, written to a file;
  ``export_peak_rss_mb`` is the child's peak resident memory (ru_maxrss), Django included;
  ``export_rss_over_setup_mb`` is how far the export raised it above Django's own.
- baseline: the same files zipped with ``zipfile`` straight from disk, in a child that has
  loaded Django the same way; ``export_ratio`` = export / baseline time.
- erase: localai_site.core.privacy.user_erase, until the files are gone from disk (after commit).
  Erasure destroys the data, so each erase run gets a freshly built person.

Targets: export_s <= 30, export_peak_rss_mb <= 300, erase_s <= 10 (medians of --runs).

    .venv/bin/python bench/privacy.py [--runs 3] [--messages 10000] [--files 200] [--total-mb 100]
    .venv/bin/python bench/privacy.py --database-url postgres://postgres@127.0.0.1:5432/postgres

SQLite in a temporary data folder by default; with --database-url a fresh database is
made on that PostgreSQL server and dropped at the end. One JSON line goes to stdout,
progress to stderr.
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

TARGETS = {"export_s": 30, "export_peak_rss_mb": 300, "erase_s": 10}
WORDS = [
    "the", "a", "model", "reply", "history", "local", "private", "file", "note", "plan", "answer",
    "question", "because", "which",
]  # fmt: skip


# --- building the data ------------------------------------------------------------------------
def _file_of(index: int, size: int, rng: random.Random):
    """A file of about ``size`` bytes, of the kinds people upload."""
    from io import BytesIO

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    kind = index % 4
    if kind == 0:  # a PNG of noise: as large as its pixels
        side = max(8, int((size / 3) ** 0.5))
        out = BytesIO()
        Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(
            out, "PNG", compress_level=1
        )
        return SimpleUploadedFile(f"picture {index}.png", out.getvalue(), "image/png")
    if kind == 1:  # text compresses, as real notes do
        words = " ".join(rng.choices(WORDS, k=size // 5))
        return SimpleUploadedFile(f"notes {index}.txt", words.encode()[:size], "text/plain")
    body = b"%PDF-1.7\n" + rng.randbytes(size - 16) + b"\n%%EOF\n"  # scanned pages barely compress
    return SimpleUploadedFile(f"document {index}.pdf", body, "application/pdf")


def person_build(*, email: str, messages: int, files: int, total_bytes: int, seed: int) -> int:
    """A person with ``messages`` in 20 conversations and ``files`` uploads; returns their id."""
    from accounts.models import User
    from chat.models import Conversation, Message, MessageStatus, Role
    from chat.services import upload_save

    rng = random.Random(seed)
    person = User.objects.create_user(email, "bench-password-1", display_name=f"Bench {seed}")
    conversations = [
        Conversation.objects.create(owner=person, model="local:bench", title=f"Chat {n}") for n in range(20)
    ]
    Message.objects.bulk_create(
        (
            Message(
                conversation=conversations[n % len(conversations)],
                role=Role.USER if n % 2 == 0 else Role.ASSISTANT,
                content=" ".join(rng.choices(WORDS, k=rng.randint(40, 120))),
                status=MessageStatus.DONE,
                model="local:bench",
            )
            for n in range(messages)
        ),
        batch_size=1000,
    )
    for index in range(files):
        conversation = conversations[index % len(conversations)] if index % 2 else None
        upload_save(
            owner=person, conversation=conversation, file=_file_of(index, total_bytes // max(files, 1), rng)
        )
    return person.pk


# --- the measured children ----------------------------------------------------------------------
def child(kind: str, user_id: int, out: Path) -> dict:
    """Runs in a fresh process: Django loaded, then exactly one measured piece of work."""
    import resource

    import django

    django.setup()
    from accounts.models import User
    from chat.models import Upload
    from localai_site.core.privacy import user_erase, user_export

    user = User.objects.get(pk=user_id)
    setup_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    if kind == "baseline":
        import zipfile

        paths = [upload.file.path for upload in Upload.objects.filter(owner=user).only("file")]
        started = time.perf_counter()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, f"files/{Path(path).name}")
    elif kind == "export":
        started = time.perf_counter()
        user_export(user=user, destination=out)
    else:
        started = time.perf_counter()
        user_erase(user=user)  # outside a transaction: the files go when it commits
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_mb,
        "setup_rss_mb": setup_mb,
        "bytes": out.stat().st_size if out.exists() else 0,
    }


def measure(kind: str, user_id: int, out: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--user-id", str(user_id), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the {kind} child failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return result


def run(args, env: dict[str, str], data_dir: Path) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from chat.models import Message, Upload

    call_command("migrate", verbosity=0)
    total_bytes = args.total_mb * 1024 * 1024

    def build(seed: int) -> int:
        started = time.perf_counter()
        user_id = person_build(
            email=f"subject-{time.time_ns()}@example.com",
            messages=args.messages,
            files=args.files,
            total_bytes=total_bytes,
            seed=seed,
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        log(f"built a person in {time.perf_counter() - started:.1f}s")
        return user_id

    bystander = person_build(
        email="bystander@example.com", messages=2000, files=10, total_bytes=5 * 1024 * 1024, seed=1
    )
    bystander_rows = (Message.objects.filter(conversation__owner=bystander).count(), Upload.objects.count())
    subject = build(100)
    stored = sum(Upload.objects.filter(owner=subject).values_list("size", flat=True))
    out = data_dir / "archive.zip"
    exports, baselines = [], []
    for run_index in range(args.runs):
        exports.append(measure("export", subject, out, env))
        baselines.append(measure("baseline", subject, out, env))
        log(
            f"run {run_index + 1}: export {exports[-1]['seconds']:.2f}s, "
            f"{exports[-1]['peak_rss_mb']:.0f} MB peak; baseline {baselines[-1]['seconds']:.2f}s, "
            f"{baselines[-1]['peak_rss_mb']:.0f} MB peak"
        )
    erases = []
    for run_index in range(args.runs):
        user_id = subject if run_index == 0 else build(100 + run_index)
        files = [
            Path(settings.MEDIA_ROOT) / name
            for name in Upload.objects.filter(owner=user_id).values_list("file", flat=True)
        ]
        erases.append(measure("erase", user_id, out, env))
        left = [path for path in files if path.exists()]
        assert not User.objects.filter(pk=user_id).exists() and not left, f"erasure left {len(left)} files"
        log(f"erase run {run_index + 1}: {erases[-1]['seconds']:.2f}s")
    assert (
        Message.objects.filter(conversation__owner=bystander).count(),
        Upload.objects.count(),
    ) == bystander_rows, "the other person lost data"

    export_s = median([e["seconds"] for e in exports])
    baseline_s = median([b["seconds"] for b in baselines])
    result = {
        "export_s": export_s,
        "export_peak_rss_mb": median([e["peak_rss_mb"] for e in exports]),
        "erase_s": median([e["seconds"] for e in erases]),
        # What the export itself added to a process that had just loaded Django.
        "export_rss_over_setup_mb": median([e["peak_rss_mb"] - e["setup_rss_mb"] for e in exports]),
        "baseline_zip_s": baseline_s,
        "baseline_peak_rss_mb": median([b["peak_rss_mb"] for b in baselines]),
        "export_ratio": round(export_s / baseline_s, 2),
        "erase_peak_rss_mb": median([e["peak_rss_mb"] for e in erases]),
        "archive_mb": round(exports[0]["bytes"] / 1024 / 1024, 1),
        "files_mb": round(stored / 1024 / 1024, 1),
        "messages": args.messages,
        "files": args.files,
        "runs": args.runs,
        "database": connection.vendor,
    }
    result["targets_met"] = all(result[key] <= limit for key, limit in TARGETS.items())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--total-mb", type=int, default=100)
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a fresh database is made there")
    parser.add_argument("--child", choices=["export", "baseline", "erase"], help=argparse.SUPPRESS)
    parser.add_argument("--user-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.user_id, args.out)))
        return
    # Embedded mode: no Redis (an empty value counts as unset).
    with bench_environment(args.database_url, REDIS_URL="") as (data_dir, env):
        result = run(args, env, data_dir)
    report(result)


if __name__ == "__main__":
    main()

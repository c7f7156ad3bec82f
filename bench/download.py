"""How fast the hub downloads, hashing included, next to ``curl`` writing the same file.

A loopback hub (tests/servers.py: HubServer, in its own process, bytes sent with
``sendfile``) serves a file of ``--size-mb`` (a GGUF header and random bytes). Runs
alternate ``curl -L -o`` followed by ``sync FILE`` (the app's download ends with an fsync:
a model is ready only once it is on disk, so the baseline's file is made as durable) and the
app's download (``models_hub.services.model_download``:
HEAD for the metadata, the redirect, writing ``.partial`` through sha256, progress to
the database every half second, verification, the GGUF header, fsync and rename). The
app's downloads run one after another in one process that stays up, as in a worker, whose
peak memory is measured; the first pair warms up and is not counted; the disk is synced
between runs so that each starts from the same page-cache state. One JSON line:

    python bench/download.py [--size-mb 600] [--runs 5]

``ratio_vs_curl`` is the median over the (curl, app) pairs of curl's time / the app's
time (target >= 0.8); ``ratio_vs_curl_unsynced`` the same with curl's time before its
sync; ``peak_rss_mb`` is the worker process's peak resident memory over
all its downloads (target: flat, nowhere near the file's size), ``rss_before_download_mb``
the same before its first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, VENV_BIN, bench_environment, log, median, report  # noqa: E402

REPO, FILE = "bench-org/big-GGUF", "big.gguf"


def settle() -> None:
    """Between runs: the page cache is left alike for the next one, whichever it is
    (a deleted file still being written back holds its memory until the disk is done)."""
    os.sync()
    time.sleep(0.5)


def make_file(path: Path, size: int) -> None:
    from models_hub.bundled import bundled_model_path

    with open(path, "wb") as out:
        with open(bundled_model_path(), "rb") as header:
            out.write(header.read(8 * 1024 * 1024))  # a real GGUF header first
        while out.tell() < size:
            out.write(os.urandom(min(16 * 1024 * 1024, size - out.tell())))


def serve_child(path: str) -> None:
    """The hub, in its own process: prints its endpoint, serves until stdin closes."""
    from tests.servers import HubServer

    hub = HubServer()
    hub.add(REPO, FILE, Path(path))
    print(hub.endpoint, flush=True)
    sys.stdin.read()
    hub.stop()


def app_child() -> None:
    """A worker-like process that stays up: each "run" line on stdin is one download
    through the app's service; it answers with one JSON line of numbers."""
    import resource

    import django

    django.setup()
    from models_hub import services
    from models_hub.models import LocalModel, LocalModelStatus

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _line in sys.stdin:
        LocalModel.objects.filter(slug="big").delete()
        model = LocalModel.objects.create(
            slug="big", name="Big", hf_repo=REPO, hf_file=FILE, status=LocalModelStatus.QUEUED
        )
        started = time.perf_counter()
        services.model_download(model_id=model.pk)
        seconds = time.perf_counter() - started
        model.refresh_from_db()
        assert model.status == LocalModelStatus.READY, model.error
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "rss_before_mb": rss_before, "peak_rss_mb": peak}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=600)
    parser.add_argument("--runs", type=int, default=5, help="curl/app pairs")
    args = parser.parse_args()

    with bench_environment(None, HUB_DISK_RESERVE_MB="0") as (data_dir, env):
        source = data_dir / "served.gguf"
        make_file(source, args.size_mb * 1000 * 1000)
        subprocess.run([str(VENV_BIN / "localai"), "migrate", "-v0"], env=env, check=True, cwd=ROOT)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(source)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            endpoint = server.stdout.readline().strip()
            env["HF_ENDPOINT"] = endpoint
            worker = subprocess.Popen(
                [sys.executable, __file__, "--app"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            url = f"{endpoint}/{REPO}/resolve/main/{FILE}"
            models_dir = data_dir / "models"
            curl_out = data_dir / "curl.gguf"
            curl_s, app_s, ratios, unsynced_ratios, peaks, before = [], [], [], [], [], []
            for run in range(args.runs + 1):  # the first pair warms the caches
                started = time.perf_counter()
                subprocess.run(["curl", "-sS", "-f", "-L", "-o", str(curl_out), url], check=True)
                curl_unsynced = time.perf_counter() - started
                # A model is ready only once it is on disk, so the baseline ends there too.
                subprocess.run(["sync", str(curl_out)], check=True)
                curl = time.perf_counter() - started
                curl_out.unlink()
                settle()
                worker.stdin.write("run\n")
                worker.stdin.flush()
                result = json.loads(worker.stdout.readline())
                shutil.rmtree(models_dir, ignore_errors=True)
                settle()
                app, peak = result["seconds"], result["peak_rss_mb"]
                log(
                    f"run {run}: curl {curl:.2f}s ({curl_unsynced:.2f}s before sync), "
                    f"app {app:.2f}s, peak {peak:.0f} MB"
                )
                if run == 0:
                    continue
                curl_s.append(curl)
                app_s.append(result["seconds"])
                ratios.append(curl / result["seconds"])
                unsynced_ratios.append(curl_unsynced / result["seconds"])
                peaks.append(result["peak_rss_mb"])
                before.append(result["rss_before_mb"])
            worker.stdin.close()
            worker.wait(timeout=30)
        finally:
            server.stdin.close()
            server.wait(timeout=10)

    size_mb = args.size_mb
    report(
        {
            "bench": "download",
            "size_mb": size_mb,
            "runs": args.runs,
            "curl_mb_s": median([size_mb / s for s in curl_s]),
            "app_mb_s": median([size_mb / s for s in app_s]),
            "ratio_vs_curl": round(statistics.median(ratios), 3),
            "ratio_vs_curl_unsynced": round(statistics.median(unsynced_ratios), 3),
            "peak_rss_mb": median(peaks),
            "rss_before_download_mb": median(before),
        }
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve_child(sys.argv[2])
    elif sys.argv[1:] == ["--app"]:
        app_child()
    else:
        main()

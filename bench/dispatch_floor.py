"""The floor under ``concurrent_streams.py``'s first-token wait: how long 200 Celery tasks take
to start on this machine when nothing else is in the way.

One process sends --tasks tasks at once through Redis to a Celery worker started as `localai
worker --queues cloud` starts its pool (threads, CLOUD_CONCURRENCY of them, prefetch 1); each
task only publishes its number on a Redis channel, which the sender reads. No Django, database,
channel layer, websocket or provider: each arrival is the least a reply's first words can wait
for with a Celery worker in between. ``arrival_p95_ms``: from the first send to the 95th
percentile's arrival, the median of --rounds rounds.

    .venv/bin/python bench/dispatch_floor.py [--tasks 200] [--rounds 5]

Redis: BENCH_REDIS_URL, by default redis://127.0.0.1:6379/12, flushed at the start and the end.
One JSON line goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, VENV_BIN, log, median, percentile, processes, report  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
QUEUE = "cloud"
ARRIVALS = "dispatch-floor"

app = Celery("dispatch_floor", broker=REDIS_URL)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=1, task_default_queue=QUEUE)
publisher = redis.Redis.from_url(REDIS_URL)  # one pool for the worker's threads, as the app has


@app.task(name="dispatch_floor.arrive")
def arrive(number: int) -> None:
    publisher.publish(ARRIVALS, str(number))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()

    from localai_site.settings import CLOUD_CONCURRENCY  # what `localai worker --queues cloud` runs

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    worker = [str(VENV_BIN / "celery"), "-A", "bench.dispatch_floor", "worker", "--pool", "threads"]
    worker += ["--concurrency", str(CLOUD_CONCURRENCY), "--queues", QUEUE, "--loglevel", "warning"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (
        tempfile.TemporaryDirectory(prefix="dispatch-floor-") as folder,
        processes((worker, env, Path(folder) / "worker.log")),
    ):
        _wait_for_worker()
        sends, p50s, p95s = [], [], []
        for number in range(args.rounds):
            sent_ms, arrivals = _round(client, args.tasks)
            sends.append(sent_ms)
            p50s.append(percentile(arrivals, 0.5))
            p95s.append(percentile(arrivals, 0.95))
            log(f"round {number}: sent {sent_ms:.0f} ms, arrivals p50 {p50s[-1]:.0f}, p95 {p95s[-1]:.0f} ms")
    client.flushdb()
    report(
        {
            "bench": "dispatch_floor",
            "tasks": args.tasks,
            "rounds": args.rounds,
            "concurrency": CLOUD_CONCURRENCY,
            "send_ms": median(sends),
            "arrival_p50_ms": median(p50s),
            "arrival_p95_ms": median(p95s),
            "load_before": [round(load, 2) for load in load_before],
        }
    )


def _wait_for_worker(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not app.control.ping(timeout=1):
        if time.monotonic() > deadline:
            raise TimeoutError("the Celery worker did not answer")


def _round(client: redis.Redis, tasks: int) -> tuple[float, list[float]]:
    """Send ``tasks`` at once; answers how long the sending took and each arrival's time, in ms
    from the first send."""
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(ARRIVALS)
    arrived: dict[int, float] = {}
    started = time.perf_counter()
    for number in range(tasks):
        arrive.apply_async((number,), queue=QUEUE)
    sent_ms = (time.perf_counter() - started) * 1000
    deadline = time.monotonic() + 60
    while len(arrived) < tasks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tasks - len(arrived)} tasks did not arrive")
        message = subscription.get_message(timeout=1)
        if message is not None:
            arrived[int(message["data"])] = (time.perf_counter() - started) * 1000
    subscription.close()
    return sent_ms, list(arrived.values())


if __name__ == "__main__":
    main()

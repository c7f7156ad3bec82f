"""What /healthz and /readyz check, and the heartbeat workers write for them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from functools import cache

from django.conf import settings
from django.db import connection

HEARTBEAT_EVERY_S = 10
_HEARTBEAT_TTL_S = 3 * HEARTBEAT_EVERY_S
_WORKER_KEY = "localai:worker:"


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def redis_ok() -> bool:
    try:
        return bool(_redis().ping())
    except Exception:
        return False


def heartbeat_report(queues: list[str]) -> dict:
    """What a worker announces: its queues, the models it holds and its machine."""
    from models_hub.machine import machine_facts
    from models_hub.runtime import loaded_summary

    loaded = loaded_summary()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queues": queues,
        "loaded": loaded,
        "busy": any(model["in_use"] for model in loaded),
        "machine": machine_facts().as_dict(),
        "at": time.time(),
    }


def workers() -> list[dict]:
    """The live workers' latest heartbeats (embedded mode: this process, which runs every queue)."""
    if not settings.SCALED:
        return [heartbeat_report(["local", "cloud", "downloads", "default"])]
    client = _redis()
    keys = sorted(client.scan_iter(match=f"{_WORKER_KEY}*", count=100))
    return [json.loads(raw) for raw in client.mget(keys) if raw] if keys else []


def workers_by_queue() -> dict[str, int]:
    """Live workers per queue, from their heartbeats."""
    if not settings.SCALED:
        return {"local": 1, "cloud": 1}
    counts = {"local": 0, "cloud": 0}
    for worker in workers():
        for queue in worker["queues"]:
            if queue in counts:
                counts[queue] += 1
    return counts


def readiness() -> tuple[bool, dict]:
    report: dict = {"database": "ok" if database_ok() else "down"}
    ready = report["database"] == "ok"
    if settings.SCALED:
        report["redis"] = "ok" if redis_ok() else "down"
        ready = ready and report["redis"] == "ok"
    if not settings.SCALED or report["redis"] == "ok":
        report["workers"] = workers_by_queue()
        ready = ready and report["workers"]["local"] > 0
    return ready, report


def heartbeat_start(queues: list[str]) -> None:
    """Announce this worker every few seconds while the process lives, even mid-reply, and
    at once when it loads, unloads, starts or stops using a model."""
    from models_hub.runtime import state_changed

    key = f"{_WORKER_KEY}{socket.gethostname()}:{os.getpid()}"

    def announce() -> None:
        state_changed.clear()
        # Redis away for a moment: readiness shows it; the next beat tries again.
        with contextlib.suppress(Exception):
            _redis().set(key, json.dumps(heartbeat_report(queues)), ex=_HEARTBEAT_TTL_S)

    def beat() -> None:
        while True:
            state_changed.wait(HEARTBEAT_EVERY_S)
            announce()

    announce()  # before the worker says it is ready: readiness must not lag behind it
    threading.Thread(target=beat, name="localai-heartbeat", daemon=True).start()

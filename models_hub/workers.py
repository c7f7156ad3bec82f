"""The worker registry: which worker processes are alive, what they serve and hold.

Each worker announces itself in Redis every few seconds (its queues, the local models its
runner holds, its machine), and at once when that changes. The hub page, readiness and the
choice of where a local reply runs all read these heartbeats. In embedded mode there is one
process, which serves every queue: it describes itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from redis import RedisError

from localai_site.core.queues import WORKER_QUEUE_PREFIX, Queue
from localai_site.core.redis_client import redis_client
from localai_site.core.tasks import TaskQueueUnavailable, task_enqueue

from .machine import machine_facts
from .models import LocalModel
from .runtime import loaded_summary, prompt_caches_forget_here, state_changed

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 10
HEARTBEAT_TTL_S = 3 * HEARTBEAT_EVERY_S
_WORKER_KEY = "localai:worker:"
_stopping = threading.Event()  # set once this worker's shutdown has begun
_announcing = threading.Lock()  # so that no beat lands after the heartbeat is taken away


def worker_queue_name() -> str:
    """The queue only this worker process consumes."""
    return f"{WORKER_QUEUE_PREFIX}{socket.gethostname()}.{os.getpid()}"


@dataclass(frozen=True)
class WorkerView:
    host: str
    pid: int
    queues: list[str]
    loaded: list[dict]
    busy: bool
    machine: dict
    at: float = 0.0  # when it last announced itself (time.time())

    @property
    def own_queue(self) -> str:
        return next((q for q in self.queues if q.startswith(WORKER_QUEUE_PREFIX)), "")

    @property
    def shared_queues(self) -> list[str]:
        return [q for q in self.queues if not q.startswith(WORKER_QUEUE_PREFIX) and q != Queue.DEFAULT]

    def holds(self, slug: str) -> bool:
        return any(model["slug"] == slug for model in self.loaded)

    def has_room_for(self, slug: str) -> bool:
        """Whether it holds ``slug`` with a slot free: a reply sent there starts at once. Only
        a worker heard from within a beat or so: one that died without a word still looks alive
        until its heartbeat expires, and a reply sent to its own queue would wait there until
        failed as stale."""
        if time.time() - self.at > HEARTBEAT_EVERY_S + 5:
            return False
        return any(
            model["slug"] == slug and model["active"] + model["waiting"] < model["parallel"]
            for model in self.loaded
        )


def heartbeat_report(queues: list[str]) -> dict:
    """What a worker announces: its queues, the models it holds and its machine."""
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


def _heartbeats() -> list[dict]:
    if not settings.SCALED:
        return [heartbeat_report([str(queue) for queue in Queue])]
    client = redis_client()
    keys = sorted(client.scan_iter(match=f"{_WORKER_KEY}*", count=100))
    return [json.loads(raw) for raw in client.mget(keys) if raw] if keys else []


def workers_list() -> list[WorkerView]:
    """The live workers, from their latest heartbeats (raises RedisError while it is down)."""
    return [
        WorkerView(
            host=beat["host"],
            pid=beat["pid"],
            queues=beat["queues"],
            loaded=beat.get("loaded", []),
            busy=beat.get("busy", False),
            machine=beat.get("machine", {}),
            at=beat.get("at", 0.0),
        )
        for beat in _heartbeats()
    ]


def workers_by_queue() -> dict[str, int]:
    """Live workers per queue that replies go to."""
    if not settings.SCALED:  # this process serves every queue; no heartbeat to build
        return {Queue.LOCAL.value: 1, Queue.CLOUD.value: 1}
    counts = {Queue.LOCAL.value: 0, Queue.CLOUD.value: 0}
    for worker in workers_list():
        for queue in worker.queues:
            if queue in counts:
                counts[queue] += 1
    return counts


def announced_from_here() -> bool:
    """Whether a worker process on this machine (container) announced itself within the
    lifetime of a heartbeat: it runs and reaches Redis. Raises RedisError while Redis is down."""
    pattern = f"{_WORKER_KEY}{socket.gethostname()}:*"
    return next(iter(redis_client().scan_iter(match=pattern, count=1000)), None) is not None


def local_queue_for(model: LocalModel) -> str:
    """A worker that holds ``model`` with a slot free answers at once, whatever else it is
    writing; otherwise any local worker takes the reply from the shared queue (and loads the
    model, or waits for a slot of its own)."""
    if not settings.SCALED:
        return Queue.LOCAL
    try:
        workers = workers_list()
    except RedisError:  # the heartbeats are on Redis: while it is down, the shared queue
        return Queue.LOCAL
    for worker in workers:
        if worker.own_queue and worker.has_room_for(model.slug):
            return worker.own_queue
    return Queue.LOCAL


def prompt_caches_forget(cache_keys: list[str]) -> None:
    """Drop what model runners keep of these conversations (deleted: what is kept is derived
    from their words): this process's runner, and in scaled mode every worker's that holds a
    model, by a task on its own queue. A worker that cannot be reached now (Redis down) drops
    them when they have been idle for ``LOCAL_MODEL_IDLE_UNLOAD_S``, or with its model."""
    prompt_caches_forget_here(cache_keys)
    if not settings.SCALED or not cache_keys:
        return
    try:
        for worker in workers_list():
            if worker.own_queue and worker.loaded:
                task_enqueue("models_hub.forget_prompts", cache_keys, queue=worker.own_queue)
    except (RedisError, TaskQueueUnavailable) as exc:
        logger.warning("Could not tell workers to drop %s conversations' prompts: %s", len(cache_keys), exc)


def heartbeat_start(queues: list[str]) -> None:
    """Announce this worker every few seconds while the process lives, even mid-reply, and
    at once when it loads, unloads, starts or stops using a model; until ``heartbeat_stop``."""
    key = _heartbeat_key()

    def announce() -> None:
        state_changed.clear()
        # Redis away for a moment: readiness shows it; the next beat tries again.
        with _announcing, contextlib.suppress(Exception):
            if not _stopping.is_set():
                redis_client().set(key, json.dumps(heartbeat_report(queues)), ex=HEARTBEAT_TTL_S)

    def beat() -> None:
        while not _stopping.is_set():
            state_changed.wait(HEARTBEAT_EVERY_S)
            announce()  # which announces nothing once stopping

    announce()  # before the worker says it is ready: readiness must not lag behind it
    threading.Thread(target=beat, name="localai-heartbeat", daemon=True).start()


def heartbeat_stop() -> None:
    """Stop announcing this worker and take its heartbeat away, as its shutdown begins: it
    consumes nothing more, so no reply may be sent to its own queue."""
    with _announcing:
        _stopping.set()
    state_changed.set()
    with contextlib.suppress(Exception):
        redis_client().delete(_heartbeat_key())


def _heartbeat_key() -> str:
    return f"{_WORKER_KEY}{socket.gethostname()}:{os.getpid()}"

"""One way to start background work, in both modes.

Scaled mode hands the task to Celery (Redis broker, separate worker processes).
Embedded mode runs it on a pool inside this process: local generation on a single
thread (one llama.cpp model at a time), everything else on a small pool.

Tasks are named, not imported: an app's ``tasks.py`` calls its services, so its services
start tasks by the name the task was registered with (``chat.generate_reply``).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from celery import Task, current_app
from django.conf import settings
from django.db import close_old_connections, connections
from kombu.exceptions import OperationalError

from .queues import Queue

logger = logging.getLogger(__name__)


# Exports have a pool of their own: many people asking at once must not delay housekeeping.
_POOL_SIZES: dict[str, int] = {
    Queue.LOCAL: 1,
    Queue.CLOUD: 8,
    Queue.DOWNLOADS: 2,
    Queue.EXPORTS: 1,
    Queue.DEFAULT: 2,
}
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_discovery_lock = threading.Lock()  # see _task_named


def _forget_pools_after_fork() -> None:
    # A forked child (a test server, a pre-forking web server) has none of the parent's
    # pool threads: it must start its own pools, not queue work nobody will run.
    global _pools_lock, _discovery_lock
    _pools_lock = threading.Lock()
    _discovery_lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _pool(queue: str) -> ThreadPoolExecutor:
    with _pools_lock:
        if queue not in _pools:
            _pools[queue] = ThreadPoolExecutor(
                max_workers=_POOL_SIZES.get(queue, 2), thread_name_prefix=f"localai-{queue}"
            )
        return _pools[queue]


def _task_named(name: str) -> Task:
    tasks = current_app.tasks
    if name not in tasks:
        # Celery's discovery returns at once, having imported nothing, while another thread
        # runs it: the first tasks after start-up (the scheduler's) would not be found.
        with _discovery_lock:
            current_app.loader.import_default_modules()  # each app's tasks.py, as a worker does
    return tasks[name]


def _run_in_process(name: str, args: tuple) -> None:
    close_old_connections()
    try:
        _task_named(name).run(*args)
    except Exception:
        logger.exception("Task %s%r failed", name, args)
    finally:
        connections.close_all()


class TaskQueueUnavailable(Exception):
    """The broker (Redis in scaled mode) cannot be reached: the task was not queued."""


def task_enqueue(name: str, *args: object, queue: str) -> Future | None:
    """Start the task registered as ``name`` with ``args`` on ``queue`` (a ``Queue``, or a
    worker's own queue). Call it from ``transaction.on_commit``.

    Raises ``TaskQueueUnavailable`` when the broker cannot be reached."""
    if settings.TASKS_IN_PROCESS:
        return _pool(queue).submit(_run_in_process, name, args)
    try:
        current_app.send_task(name, args=args, queue=queue)
    except OperationalError as exc:  # kombu's word for a broker it cannot reach
        raise TaskQueueUnavailable(str(exc)) from exc
    return None


def tasks_wait_idle(queue: str, *, timeout: float) -> None:
    """Embedded mode: wait until what was started on ``queue`` so far has run (nothing to
    wait for in scaled mode, or when nothing was started)."""
    with _pools_lock:
        pool = _pools.get(queue)
    if pool is not None and _POOL_SIZES.get(queue) == 1:
        pool.submit(lambda: None).result(timeout=timeout)  # one thread, first in first out

"""One way to start background work, in both modes.

Scaled mode hands the task to Celery (Redis broker, separate worker processes).
Embedded mode runs it on a pool inside this process: local generation on a single
thread (one llama.cpp model at a time), everything else on a small pool.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from celery import Task
from django.conf import settings
from django.db import close_old_connections, connections
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

_POOL_SIZES = {"local": 1, "cloud": 8, "downloads": 2, "default": 2}
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools_after_fork() -> None:
    # A forked child (a test server, a pre-forking web server) has none of the parent's
    # pool threads: it must start its own pools, not queue work nobody will run.
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _pool(queue: str) -> ThreadPoolExecutor:
    with _pools_lock:
        if queue not in _pools:
            _pools[queue] = ThreadPoolExecutor(
                max_workers=_POOL_SIZES.get(queue, 2), thread_name_prefix=f"localai-{queue}"
            )
        return _pools[queue]


def _run_in_process(task: Task, args: tuple) -> None:
    close_old_connections()
    try:
        task.run(*args)
    except Exception:
        logger.exception("Task %s%r failed", task.name, args)
    finally:
        connections.close_all()


class TaskQueueUnavailable(Exception):
    """The broker (Redis in scaled mode) cannot be reached: the task was not queued."""


def task_enqueue(task: Task, *args: object, queue: str) -> Future | None:
    """Start ``task(*args)`` on ``queue``. Call it from ``transaction.on_commit``.

    Raises ``TaskQueueUnavailable`` when the broker cannot be reached."""
    if settings.TASKS_IN_PROCESS:
        return _pool(queue).submit(_run_in_process, task, args)
    try:
        task.apply_async(args=args, queue=queue)
    except OperationalError as exc:  # kombu's word for a broker it cannot reach
        raise TaskQueueUnavailable(str(exc)) from exc
    return None

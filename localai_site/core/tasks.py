"""One way to start background work, in both modes.

Scaled mode hands the task to Celery (Redis broker, separate worker processes).
Embedded mode runs it on a pool inside this process: local generation on
LOCAL_CONCURRENCY threads (the model runner batches their replies), cloud tasks on hundreds of
threads (each waits on the network, as in a cloud worker), everything else on a small pool.

Tasks are named, not imported: an app's ``tasks.py`` calls its services, so its services
start tasks by the name the task was registered with (``chat.generate_reply``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, wait

from celery import Task, current_app
from django.conf import settings
from django.db import close_old_connections, connections
from django.urls import set_script_prefix
from kombu.exceptions import OperationalError

from .queues import Queue
from .redis_client import redis_client

logger = logging.getLogger(__name__)


# Exports have a pool of their own: many people asking at once must not delay housekeeping.
# Cloud and local tasks get CLOUD_CONCURRENCY and LOCAL_CONCURRENCY threads, as a worker
# for those queues does (see _pool_size).
_POOL_SIZES: dict[str, int] = {
    Queue.DOWNLOADS: 2,
    Queue.EXPORTS: 1,
    Queue.DEFAULT: 2,
}
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_waiting: Counter[str] = Counter()  # embedded mode: tasks started on each queue, not yet running
_unfinished: defaultdict[str, set[Future]] = defaultdict(set)  # embedded mode: not yet ended
_discovery_lock = threading.Lock()  # see _task_named

# Most tasks keep their thread's database connection for their whole run (an export, a
# download, an image the provider takes a minute to make); only a reply lets go of its
# connection while it streams (chat/streaming.py), so it alone may run by the hundred on a
# cloud worker's threads. The others run this many at once per process, as many as a worker
# ran of everything before: the process's connections to PostgreSQL stay bounded.
CONNECTION_HOLDERS_AT_ONCE = 8
_connection_holders = threading.BoundedSemaphore(CONNECTION_HOLDERS_AT_ONCE)


def _forget_pools_after_fork() -> None:
    # A forked child (a test server, a pre-forking web server) has none of the parent's
    # pool threads: it must start its own pools, not queue work nobody will run.
    global _pools_lock, _discovery_lock, _connection_holders
    _pools_lock = threading.Lock()
    _discovery_lock = threading.Lock()
    _connection_holders = threading.BoundedSemaphore(CONNECTION_HOLDERS_AT_ONCE)
    _pools.clear()
    _waiting.clear()
    _unfinished.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _pool_size(queue: str) -> int:
    if queue == Queue.CLOUD:
        return settings.CLOUD_CONCURRENCY
    if queue == Queue.LOCAL:
        return settings.LOCAL_CONCURRENCY
    return _POOL_SIZES.get(queue, 2)


def _pool(queue: str) -> ThreadPoolExecutor:
    with _pools_lock:
        if queue not in _pools:
            _pools[queue] = ThreadPoolExecutor(
                max_workers=_pool_size(queue), thread_name_prefix=f"localai-{queue}"
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


def task_thread_prepare() -> None:
    """A task renders links (a message's attachments) outside any request: the sub-path the
    app is served under goes in front of them, as Django puts it per request."""
    set_script_prefix(settings.FORCE_SCRIPT_NAME or "/")


def task_slot_take(task: Task) -> bool:
    """Before ``task`` runs on this thread: wait for a place among the tasks that hold a
    database connection, unless it is one that lets go of its own (``streams_without_connection``
    on its decorator). Answers whether it took one, to give back with ``task_slot_give_back``."""
    if getattr(task, "streams_without_connection", False):
        return False
    _connection_holders.acquire()
    return True


def task_slot_give_back() -> None:
    _connection_holders.release()


def _run_in_process(queue: str, name: str, args: tuple) -> None:
    with _pools_lock:
        _waiting[queue] -= 1
    close_old_connections()
    task_thread_prepare()
    task = _task_named(name)
    took_slot = task_slot_take(task)
    try:
        task.run(*args)
    except Exception:
        logger.exception("Task %s%r failed", name, args)
    finally:
        connections.close_all()
        if took_slot:
            task_slot_give_back()


class TaskQueueUnavailable(Exception):
    """The broker (Redis in scaled mode) cannot be reached: the task was not queued."""


def task_enqueue(name: str, *args: object, queue: str) -> Future | None:
    """Start the task registered as ``name`` with ``args`` on ``queue`` (a ``Queue``, or a
    worker's own queue). Call it from ``transaction.on_commit``.

    Raises ``TaskQueueUnavailable`` when the broker cannot be reached."""
    if settings.TASKS_IN_PROCESS:
        pool = _pool(queue)
        with _pools_lock:
            _waiting[queue] += 1
        future = pool.submit(_run_in_process, queue, name, args)
        with _pools_lock:
            _unfinished[queue].add(future)
        future.add_done_callback(lambda done: _ended(queue, done))  # at once if already done
        return future
    try:
        current_app.send_task(name, args=args, queue=queue)
    except OperationalError as exc:  # kombu's word for a broker it cannot reach
        raise TaskQueueUnavailable(str(exc)) from exc
    return None


def _ended(queue: str, future: Future) -> None:
    with _pools_lock:
        _unfinished[queue].discard(future)


def tasks_wait_idle(queue: str, *, timeout: float) -> None:
    """Embedded mode: wait until what was started on ``queue`` so far has run, however many
    threads its pool has (nothing to wait for in scaled mode, or when nothing was started).
    Raises TimeoutError when it has not within ``timeout`` seconds."""
    with _pools_lock:
        started = list(_unfinished[queue])
    if wait(started, timeout=timeout).not_done:
        raise TimeoutError(f"Tasks on {queue} still running after {timeout:.0f} s")


# Kombu's Redis transport keeps a queue as a list under its name, and messages sent with a
# priority in lists of their own beside it (its default ``sep`` and ``priority_steps``).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def tasks_waiting() -> dict[str, int]:
    """Tasks started on each queue that no worker has taken yet: the broker's lists in scaled
    mode (raises ``redis.RedisError`` while Redis is down), this process's pools in embedded."""
    if settings.TASKS_IN_PROCESS:
        with _pools_lock:
            return {str(queue): max(_waiting[queue], 0) for queue in Queue}
    pipeline = redis_client().pipeline(transaction=False)
    for queue in Queue:
        for suffix in _PRIORITY_SUFFIXES:
            pipeline.llen(f"{queue}{suffix}")
    lengths = iter(pipeline.execute())
    return {str(queue): sum(next(lengths) for _ in _PRIORITY_SUFFIXES) for queue in Queue}

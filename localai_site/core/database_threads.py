"""A few threads that run database work for many callers, keeping their connections open
while more work waits.

Opening a PostgreSQL connection costs ~10 ms of waiting and ~1 ms of CPU, and Django (at
``DB_CONN_MAX_AGE=0``) would open one per call. Here a thread keeps its connection from one
job to the next while jobs are queued (a burst of sends, hundreds of replies starting) and,
unless ``DB_CONN_MAX_AGE`` says otherwise, closes it once none waits, so nothing stays open
behind a quiet process. Used by the sockets (``localai_site.core.sockets.database_work``)
and by the replies being written (``chat.streaming.reply_database``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from django.db import connection

logger = logging.getLogger(__name__)

_R = TypeVar("_R")
_IDLE_CLOSE_S = 1.0  # a thread with nothing to do lets its connection go after this


class DatabaseThreads(Executor):
    """Up to ``size()`` threads named ``name``, started as work comes; an ``Executor``, so
    asyncio and asgiref's ``SyncToAsync`` can hand them work."""

    def __init__(self, *, size: Callable[[], int], name: str) -> None:
        self._size = size
        self._name = name
        self._reset()
        # A forked child has none of its parent's threads: work queued for them would never run.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        future: Future[_R] = Future()
        self._jobs.put((lambda: fn(*args, **kwargs), future))
        with self._lock:
            if self._threads < self._size():
                self._threads += 1
                threading.Thread(target=self._serve, name=self._name, daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            try:
                func, future = self._jobs.get(timeout=_IDLE_CLOSE_S)
            except queue.Empty:
                _connection_release()
                continue
            if not future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting (a socket that closed)
            try:
                result = func()
            except BaseException as exc:
                _connection_close()  # whatever state it was left in, the next job starts afresh
                future.set_exception(exc)
                continue
            if self._jobs.empty():
                _connection_release()  # before the caller goes on: nothing is left open behind it
            future.set_result(result)


def _connection_close() -> None:
    try:
        connection.close()
    except Exception:  # a connection the server already dropped
        logger.debug("Closing a database connection failed", exc_info=True)


def _connection_release() -> None:
    """Close the connection unless ``DB_CONN_MAX_AGE`` keeps it (by default it does not)."""
    try:
        connection.close_if_unusable_or_obsolete()
    except Exception:
        logger.debug("Closing a database connection failed", exc_info=True)

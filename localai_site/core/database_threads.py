"""A few threads that run database work for many callers, keeping their connections open
while work keeps coming.

Opening a PostgreSQL connection costs ~10 ms of waiting and a few ms of CPU (most of it the
server's, which starts a process for each), and Django (at ``DB_CONN_MAX_AGE=0``) would open
one per call. Here a thread keeps its connection from one job to the next and, unless
``DB_CONN_MAX_AGE`` says otherwise, closes it once it has had no work for ``IDLE_CLOSE_S``, so
nothing stays open behind a quiet process. Not as soon as the queue is empty: in a burst the
callers hand in work slower than the threads take it (they share one interpreter), so the
queue stands empty after most jobs; while 200 people sent at once that cost ~440 new
connections in the web process and a worker, against ~35 with the grace.

Before the process forks, every thread closes its connection: SQLite does not survive a
connection carried into a child (the browser tests fork their server from the test process,
and the child's first write failed with "disk I/O error"), and a PostgreSQL socket shared by
two processes would interleave their queries. Used by the sockets
(``localai_site.core.sockets.database_work``) and by the replies being written
(``chat.streaming.reply_database``).
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
IDLE_CLOSE_S = 1.0  # a thread given no work for this long lets its connection go
_FORK_WAIT_S = 5.0  # how long a fork waits for a thread busy with a job to let go


class DatabaseThreads(Executor):
    """Up to ``size()`` threads named ``name``, started as work comes; an ``Executor``, so
    asyncio and asgiref's ``SyncToAsync`` can hand them work."""

    def __init__(self, *, size: Callable[[], int], name: str) -> None:
        self._size = size
        self._name = name
        self._reset()
        # A forked child has none of its parent's threads: work queued for them would never run.
        os.register_at_fork(
            before=self._close_before_fork, after_in_parent=self._go_on_after_fork, after_in_child=self._reset
        )

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._forked = threading.Event()  # set again once the parent has forked

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        future: Future[_R] = Future()
        self._jobs.put((lambda: fn(*args, **kwargs), future))
        with self._lock:
            if self._threads < self._size():
                self._threads += 1
                threading.Thread(target=self._serve, name=self._name, daemon=True).start()
        return future

    def _serve(self) -> None:
        _serving.pool = self
        wait: float | None = None  # no connection open: nothing to let go while waiting
        while True:
            try:
                func, future = self._jobs.get(timeout=wait)
            except queue.Empty:
                _connection_release()
                wait = None
                continue
            if not future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting (a socket that closed)
            try:
                result = func()
            except BaseException as exc:
                _connection_close()  # whatever state it was left in, the next job starts afresh
                wait = None
                future.set_exception(exc)
                continue
            wait = None if connection.connection is None else IDLE_CLOSE_S
            future.set_result(result)

    def _close_before_fork(self) -> None:
        """Have every thread close its connection and wait, held, until the fork is done (a
        busy one finishes its job first; one stuck past ``_FORK_WAIT_S`` is logged and left)."""
        own = getattr(_serving, "pool", None) is self
        if own:
            _connection_close()  # the fork comes from one of this pool's own jobs
        with self._lock:
            others = self._threads - own
        if not others:
            return
        # One job per thread: the barrier keeps a thread from taking two, so each takes one.
        closed = threading.Barrier(others + 1, timeout=_FORK_WAIT_S)
        forked = self._forked = threading.Event()

        def close_and_hold() -> None:
            _connection_close()
            closed.wait()
            forked.wait(_FORK_WAIT_S)  # no new connection until the child has its copy

        for _ in range(others):
            self._jobs.put((close_and_hold, Future()))
        try:
            closed.wait()
        except threading.BrokenBarrierError:
            logger.warning("Forking while a %s thread still holds a database connection", self._name)

    def _go_on_after_fork(self) -> None:
        self._forked.set()


_serving = threading.local()  # ``pool``: the pool a thread serves


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

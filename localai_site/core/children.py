"""Supervised child processes: where native code that can crash or hang (PDFium, Pillow's
decoders, CTranslate2) runs, so that it costs one job, never the process that asked.

Not a task queue (``tasks``): a job here is a function call its caller waits for. Each child
takes one job at a time; a child that dies or runs past the job's time limit is killed and
forgotten, its job fails with ``ChildCrashed`` or ``ChildTimedOut``, and the next job starts a
new child. Children are spawned, never forked: a fork of a threaded server would copy locks
that other threads hold. A job's function and arguments travel by pickle, so the function
must be importable in a fresh interpreter (a module that needs no Django set-up).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")


class ChildFailed(Exception):
    """The child process gave no answer for the job."""


class ChildCrashed(ChildFailed):
    """The child process ended while it held the job (a crash, or it died starting)."""


class ChildTimedOut(ChildFailed):
    """The job ran past its time limit; the child was killed."""


def _child_main(conn: Connection, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    if initializer is not None:
        initializer(*initargs)  # raising ends the child: its first job fails as a crash
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return  # the parent went away
        try:
            outcome = (True, fn(*args))
        except Exception as exc:  # the job's own error, raised again in the parent
            outcome = (False, exc)
        conn.send(outcome)


class _Child:
    def __init__(self, initializer: Callable[..., None] | None, initargs: tuple) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=_child_main, args=(theirs, initializer, initargs), daemon=True, name="localai-child"
        )
        self.process.start()
        theirs.close()

    def call(self, fn: Callable[..., T], args: tuple, timeout: float | None) -> tuple[bool, Any]:
        try:
            self.conn.send((fn, args))
            answered = self.conn.poll(timeout)  # also true once the child is gone
            if not answered:
                raise ChildTimedOut(f"no answer in {timeout:g} s")
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            self.process.join(1)
            raise ChildCrashed(f"the child process ended (exit code {self.process.exitcode})") from exc

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


_pools: weakref.WeakSet[ChildPool] = weakref.WeakSet()


class ChildPool:
    """Up to ``size`` children, started on demand and kept between jobs; a job waits for a
    free one. ``initializer(*initargs)`` runs once in each child (loading a model, say)."""

    def __init__(
        self, *, size: int = 1, initializer: Callable[..., None] | None = None, initargs: tuple = ()
    ) -> None:
        self._size = size
        self._initializer = initializer
        self._initargs = initargs
        self._reset()
        _pools.add(self)

    def _reset(self) -> None:
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._size)

    def run(self, fn: Callable[..., T], *args: Any, timeout: float | None) -> T:
        """``fn(*args)`` in a child, its answer or its exception; ``timeout`` seconds at most,
        counting the start of a child started for it."""
        with self._slots:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None or not child.process.is_alive():
                child = _Child(self._initializer, self._initargs)
            try:
                ok, value = child.call(fn, args, timeout)
            except BaseException:
                child.kill()  # crashed, hung, or we were interrupted mid-job: its state is unknown
                raise
            with self._lock:
                self._idle.append(child)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """End the idle children (busy ones end with their job's caller)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


def _forget_after_fork() -> None:
    # A forked process (the test server) owns none of its parent's children or locks.
    for pool in list(_pools):
        pool._reset()


os.register_at_fork(after_in_child=_forget_after_fork)

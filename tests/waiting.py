"""Waiting for something another thread or process does, without a fixed sleep.

Every test that waits goes through here: the wait returns what it waited for, and a
timeout says what was awaited (with ``details``, also what the processes involved logged).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from channels.db import database_sync_to_async

T = TypeVar("T")
Errors = tuple[type[BaseException], ...]


class _Patience:
    """The deadline of one wait and the last "not yet" error seen; says what was awaited
    once the deadline has passed."""

    def __init__(self, *, what: str, timeout: float, details: Callable[[], str] | None) -> None:
        self.what, self.timeout, self.details = what, timeout, details
        self.deadline = time.monotonic() + timeout
        self.last_error: BaseException | None = None

    def check(self) -> None:
        if time.monotonic() <= self.deadline:
            return
        message = f"Timed out after {self.timeout} s waiting for {self.what}"
        if self.last_error is not None:
            message += f" (last: {self.last_error!r})"
        if self.details is not None:
            message += "\n" + self.details()
        raise AssertionError(message)


def wait_until(
    predicate: Callable[[], T],
    *,
    what: str,
    timeout: float = 30,
    every: float = 0.05,
    ignoring: Errors = (),
    details: Callable[[], str] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    ``ignoring``: errors that mean "not yet" (a server that is not listening yet).
    ``sleep``: the pause between calls; browser tests pause through Playwright, so that
    its events (websocket frames) arrive meanwhile.
    """
    patience = _Patience(what=what, timeout=timeout, details=details)
    while True:
        try:
            if value := predicate():
                return value
        except ignoring as error:
            patience.last_error = error
        patience.check()
        sleep(every)


async def wait_until_async(
    predicate: Callable[[], T],
    *,
    what: str,
    timeout: float = 30,
    every: float = 0.05,
    ignoring: Errors = (),
) -> T:
    """``wait_until`` for async tests: ``predicate`` (sync, it may use the database) runs
    off the event loop, and the pauses leave the loop free for the consumers under test."""
    patience = _Patience(what=what, timeout=timeout, details=None)
    attempt = database_sync_to_async(predicate)
    while True:
        try:
            if value := await attempt():
                return value
        except ignoring as error:
            patience.last_error = error
        patience.check()
        await asyncio.sleep(every)


def wait_until_started(
    process: subprocess.Popen,
    ready: Callable[[], T],
    *,
    what: str,
    timeout: float = 60,
    log: Path | None = None,
    ignoring: Errors = (),
) -> T:
    """Until the child ``process`` is ready (``ready()`` is truthy); fails at once if it
    exits first. Either failure shows the tail of its ``log``."""

    def log_tail() -> str:
        return log.read_text(errors="replace")[-4000:] if log else ""

    def started() -> T:
        if process.poll() is not None:
            raise AssertionError(
                f"The process exited with code {process.returncode} while waiting for {what}\n{log_tail()}"
            )
        return ready()

    return wait_until(
        started, what=what, timeout=timeout, every=0.1, ignoring=ignoring, details=log_tail if log else None
    )

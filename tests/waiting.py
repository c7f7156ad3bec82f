"""Waiting for something another thread or process does, without a fixed sleep."""

from __future__ import annotations

import time


def wait_until(predicate, *, timeout: float = 30, what: str = "the condition", every: float = 0.05):
    """Call ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(every)

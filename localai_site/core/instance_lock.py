"""Whether processes of this instance are running, told by a lock in the data folder.

Every ``localai serve`` and ``localai worker`` holds a shared lock on
``<data folder>/instance.lock`` for as long as it runs; a restore takes it exclusively, so it
refuses to replace a running instance's data and no process starts while it works. A restore
that did not finish leaves ``restore-unfinished`` behind, and nothing starts on that data
(its database may still hold people erased since the backup) until a restore completes.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from django.conf import settings

from .refusals import Refusal

_held: list[IO[str]] = []


def _lock_path() -> Path:
    return Path(settings.DATA_DIR) / "instance.lock"


def restore_unfinished_marker() -> Path:
    return Path(settings.DATA_DIR) / "restore-unfinished"


def instance_lock_hold() -> None:
    """For ``serve`` and ``worker``: this process is part of the running instance until it
    exits (the kernel drops the lock with the process)."""
    if restore_unfinished_marker().exists():
        raise SystemExit(
            "localai: a restore into this data folder did not finish; run `localai restore` again first."
        )
    handle = open(_lock_path(), "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        print("localai: waiting for the restore in progress to finish…", flush=True)
        fcntl.flock(handle, fcntl.LOCK_SH)
    _held.append(handle)


@contextmanager
def instance_stopped() -> Iterator[None]:
    """Hold the instance stopped while the body runs, or refuse when a process of it runs."""
    with open(_lock_path(), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refusal(
                "instance_running",
                "LocalAI is running on this data folder (`localai serve` or a worker): stop every "
                "process of the instance first, then restore.",
            ) from None
        yield

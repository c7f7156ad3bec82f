"""Stand-ins for a native engine that crashes or hangs, run in a child process in place of a
function of ``chat.documents``: importable by a bare interpreter (no Django)."""

import os
import time


def abort(*args) -> None:
    os.abort()  # as a decoder's segfault ends a process: no exception, no clean-up


def hang(*args) -> None:
    time.sleep(3600)


def child_pid(*args) -> int:
    return os.getpid()


def fail(*args) -> None:
    raise ValueError("the job's own error")


def abort_after_first_batch(path: str, start: int, stop: int):
    """``chat.documents.pdf_pages_text`` for the first pages, then a crash."""
    from chat.documents import pdf_pages_text

    if start:
        os.abort()
    return pdf_pages_text(path, start, stop)


def hang_after_first_batch(path: str, start: int, stop: int):
    from chat.documents import pdf_pages_text

    if start:
        hang()
    return pdf_pages_text(path, start, stop)

"""Carrying a reply from a provider to the browsers and the database.

The model's speed is the product's speed, and on a small machine every bit of CPU spent
here is taken from the model. So per token this only appends to a list and reads the
clock; the work happens once per batch (refresh the shared live text, send a delta, read
the stop flag: one Redis round trip in scaled mode) and once per save interval (one
UPDATE, no open transaction).

A cloud worker writes hundreds of replies at once, each on a thread that mostly waits on the
provider. So a reply's thread holds no database connection: what a reply reads and writes runs
on a few database threads (``reply_database``), and one thread per process keeps every reply
saved and alive while it streams (``ReplyHeartbeat``). Connections stay a handful per process
whatever the number of replies (PostgreSQL allows 100 by default, for all processes).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connection
from django.utils import timezone

from localai_site.core.database_threads import DatabaseThreads

from . import live
from .events import delta_event, utf16_len
from .models import Message, MessageStatus

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
_database_threads = DatabaseThreads(size=lambda: settings.CHAT_DATABASE_CONNECTIONS, name="localai-reply-db")


def reply_database(func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``func(*args, **kwargs)`` on one of the reply database threads, waiting for it. Inside
    its caller's transaction (a test) it runs right here: no other connection sees its rows."""
    if connection.in_atomic_block:
        return func(*args, **kwargs)
    return _database_threads.submit(func, *args, **kwargs).result()


@dataclass
class ReplyWriter:
    message: Message
    group: str
    cancel: threading.Event = field(default_factory=threading.Event)
    flush_interval_s: float = field(default_factory=lambda: settings.CHAT_FLUSH_INTERVAL_S)
    save_interval_s: float = field(default_factory=lambda: settings.CHAT_SAVE_INTERVAL_S)

    started: float = field(default_factory=time.monotonic, init=False)
    first_token_at: float | None = field(default=None, init=False)
    _parts: list[str] = field(default_factory=list, init=False)
    _pending: list[str] = field(default_factory=list, init=False)
    _sent_units: int = field(default=0, init=False)
    _last_flush: float = field(default=0.0, init=False)
    _last_save: float = field(default=0.0, init=False)
    _saved_parts: int = field(default=0, init=False)
    # Set by ReplyHeartbeat: saves its progress on its own thread rather than the keeper's.
    saves_itself: bool = field(default=False, init=False)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def add(self, text: str) -> None:
        now = time.monotonic()
        self._parts.append(text)
        self._pending.append(text)
        if self.first_token_at is None:
            self.first_token_at = now
            self._last_save = now
            self.flush(now)  # the first words go out at once
        elif now - self._last_flush >= self.flush_interval_s:
            self.flush(now)
            if self.saves_itself and self.progress_due(now):
                self.progress_save(now)

    def flush(self, now: float | None = None) -> None:
        """Send what is pending as one delta, and learn whether Stop was pressed."""
        self._last_flush = time.monotonic() if now is None else now
        message_id = self.message.pk
        if self._pending:
            chunk = "".join(self._pending)
            self._pending.clear()
            delta = delta_event(message_id=message_id, offset=self._sent_units, text=chunk)
            stop = live.batch_send(message_id=message_id, text=self.text, group=self.group, delta=delta)
            self._sent_units += utf16_len(chunk)
        else:
            stop = live.stop_requested(message_id)
        if stop:
            self.cancel.set()

    def progress_due(self, now: float) -> bool:
        """The text grew since it was last saved, a save interval ago or more."""
        return len(self._parts) > self._saved_parts and now - self._last_save >= self.save_interval_s

    def progress_save(self, now: float) -> None:
        """Write the text so far; a reply no longer streaming (failed as stale, removed) is
        cancelled: nobody is waiting for it any more."""
        self._last_save = now
        self._saved_parts = len(self._parts)
        if not Message.objects.update_while(
            self.message.pk, MessageStatus.STREAMING, content=self.text, heartbeat_at=timezone.now()
        ):
            self.cancel.set()

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first_token_at is None else round((self.first_token_at - self.started) * 1000)

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


class _ReplyKeeper:
    """The one thread of a process that saves and stamps all of its replies (ReplyHeartbeat)."""

    def __init__(self) -> None:
        self._writers: dict[int, ReplyWriter] = {}
        self._beaten: dict[int, float] = {}  # when each reply was last stamped (or watched)
        self._lock = threading.Lock()
        self._pass = threading.Lock()  # held while a pass runs
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, writer: ReplyWriter) -> None:
        with self._lock:
            self._writers[writer.message.pk] = writer
            self._beaten[writer.message.pk] = time.monotonic()  # taking it stamped it
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="localai-reply-keeper", daemon=True)
                self._thread.start()
        self._wake.set()  # it waits by the intervals set now

    def unwatch(self, writer: ReplyWriter) -> None:
        with self._lock:
            self._writers.pop(writer.message.pk, None)
            self._beaten.pop(writer.message.pk, None)
            last = not self._writers
        if last:
            with self._pass:
                pass  # a pass that still had this reply has ended: no connection is left open

    def _run(self) -> None:
        while True:
            beat_every = max(0.2, settings.CHAT_STALE_AFTER_S / 3)
            self._wake.wait(min(beat_every, settings.CHAT_SAVE_INTERVAL_S))
            self._wake.clear()
            with self._pass:
                now = time.monotonic()
                with self._lock:
                    writers = list(self._writers.values())
                    beating = [w for w in writers if now - self._beaten[w.message.pk] >= beat_every]
                    self._beaten.update((w.message.pk, now) for w in beating)
                saving = [w for w in writers if not w.saves_itself and w.progress_due(now)]
                if saving or beating:
                    try:
                        reply_database(self._keep, saving, beating, now)
                    except Exception:
                        logger.warning("Replies in progress could not be saved", exc_info=True)

    @staticmethod
    def _keep(saving: list[ReplyWriter], beating: list[ReplyWriter], now: float) -> None:
        for writer in saving:
            writer.progress_save(now)
        if not beating:
            return
        ids = [writer.message.pk for writer in beating]
        streaming = Message.objects.filter(pk__in=ids, status=MessageStatus.STREAMING)
        streaming.update(heartbeat_at=timezone.now())
        # Stop is also recorded in the database, for when the shared store cannot be reached.
        going_on = set(streaming.filter(stop_requested_at__isnull=True).values_list("pk", flat=True))
        for writer in beating:
            if writer.message.pk not in going_on:
                writer.cancel.set()


_keeper = _ReplyKeeper()


def _forget_keeper() -> None:
    global _keeper
    _keeper = _ReplyKeeper()


os.register_at_fork(after_in_child=_forget_keeper)


class ReplyHeartbeat:
    """Tells the stale check that a reply is alive while the block runs, tokens or not, and
    saves its text as it grows.

    A model loading, or reading a long prompt, sends no tokens for a while; the stale check
    must not take that for a dead worker. One thread per process (not one per reply: a
    cloud worker writes hundreds at once) saves every reply's text each
    ``CHAT_SAVE_INTERVAL_S`` if it grew, and a few times per ``CHAT_STALE_AFTER_S`` stamps
    ``heartbeat_at`` on all of them in one UPDATE and reads Stop from the database (where it
    is also recorded, for when the shared store cannot be reached). A reply that is no longer
    streaming (failed as stale, removed) is cancelled: nobody is waiting for it any more.
    A reply written inside its caller's transaction (a test) saves its text itself: no other
    connection sees its row.
    """

    def __init__(self, writer: ReplyWriter) -> None:
        self._writer = writer

    def __enter__(self) -> ReplyHeartbeat:
        self._writer.saves_itself = connection.in_atomic_block
        _keeper.watch(self._writer)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _keeper.unwatch(self._writer)

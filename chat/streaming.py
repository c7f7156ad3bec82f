"""Carrying a reply from a provider to the browsers and the database.

The model's speed is the product's speed, and on a small machine every bit of CPU spent
here is taken from the model. So per token this only appends to a list and reads the
clock; the work happens once per batch (refresh the shared live text, send a delta, read
the stop flag: one Redis round trip in scaled mode) and once per save interval (one
UPDATE, no open transaction).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import live
from .events import delta_event, utf16_len
from .models import Message, MessageStatus

logger = logging.getLogger(__name__)


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
            if now - self._last_save >= self.save_interval_s:
                self._save_progress(now)

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

    def _save_progress(self, now: float) -> None:
        self._last_save = now
        Message.objects.update_while(
            self.message.pk, MessageStatus.STREAMING, content=self.text, heartbeat_at=timezone.now()
        )

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first_token_at is None else round((self.first_token_at - self.started) * 1000)

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


class ReplyHeartbeat:
    """Tells the stale check that a reply is alive while the block runs, tokens or not.

    A model loading, or reading a long prompt, sends no tokens for a while; the stale check
    must not take that for a dead worker. A thread stamps ``heartbeat_at`` a few times per
    ``CHAT_STALE_AFTER_S`` and, while at it, reads Stop from the database (where it is also
    recorded, for when the shared store cannot be reached). A reply that is no longer
    streaming (failed as stale, removed) is cancelled: nobody is waiting for it any more.
    """

    def __init__(self, *, message_id: int, cancel: threading.Event) -> None:
        self._message_id = message_id
        self._cancel = cancel
        self._done = threading.Event()
        self._interval_s = max(0.2, settings.CHAT_STALE_AFTER_S / 3)
        self._thread = threading.Thread(target=self._run, name=f"localai-heartbeat-{message_id}", daemon=True)

    def __enter__(self) -> ReplyHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._done.wait(self._interval_s):
                self.beat()
        finally:
            connection.close()  # this thread's own connection

    def beat(self) -> None:
        try:
            alive = Message.objects.update_while(
                self._message_id, MessageStatus.STREAMING, heartbeat_at=timezone.now()
            )
            if (
                not alive
                or Message.objects.filter(pk=self._message_id, stop_requested_at__isnull=False).exists()
            ):
                self._cancel.set()
        except Exception:
            logger.warning("The heartbeat of reply %s could not be written", self._message_id, exc_info=True)

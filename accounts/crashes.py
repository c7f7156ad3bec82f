"""Crash reports kept on this instance, never sent anywhere, scrubbed before they are stored.

A report holds the exception type, a scrubbed message and the code locations of the
traceback (file, line, function, source line): no local variables, no request body,
no query string. Quoted text of any length, the values a database names in its errors
(``Key (email)=(…)``, ``DETAIL:``), email addresses, ids in paths and anything that
looks like a secret are replaced. Repeats of a failure are counted on its report, and
at most ``settings.CRASH_REPORTS_PER_HOUR`` new reports are stored an hour, so a loop
of errors cannot fill the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import traceback
from datetime import timedelta
from functools import cache
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(api[_-]?key|token|secret|password|passwd|authorization|cookie|session(?:id)?)\b(\s*[=:]\s*)\S+"
)
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|whsec|hf|xai|ghp|lai)[-_][A-Za-z0-9_-]{8,}")
# Long runs of letters mixed with digits: tokens and keys (plain identifiers have no digits).
_LONG_TOKEN = re.compile(
    r"(?=[A-Za-z0-9_+=-]{32,})(?=[A-Za-z_+=-]*\d)(?=[0-9_+=-]*[A-Za-z])[A-Za-z0-9_+=-]{32,}"
)
# Even a short quoted value can be a name or a title; none is kept.
_QUOTED = re.compile(r"""(['"])((?:\\.|(?!\1).)+?)\1""", re.DOTALL)
# PostgreSQL's details name the row's values: `Key (email)=(ann@example.com) already exists`,
# `DETAIL:  Failing row contains (…)`. The column names are ours and stay.
_DB_KEY_VALUES = re.compile(r"\bKey \(([^\n]*?)\)=\([^\n]*\)")
_DB_DETAIL = re.compile(r"(DETAIL:[ \t]*+)(?!Key \()[^\n]*")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_NUMBER_SEGMENT = re.compile(r"/\d+(?=/|$)")
MAX_MESSAGE_CHARS = 2000


@cache
def _instance_secrets() -> tuple[str, ...]:
    keys = [settings.SECRET_KEY, *settings.ENCRYPTION_KEYS]
    return tuple(key for key in keys if key and len(key) >= 8)


def _instance_secrets_removed(text: str) -> str:
    for secret in _instance_secrets():
        text = text.replace(secret, "<secret>")
    return text


def scrub_secrets(text: str) -> str:
    """Remove keys, tokens, passwords and email addresses, and keep the rest: what a log line
    may never carry (``accounts.json_logs``)."""
    text = _EMAIL.sub("<email>", _instance_secrets_removed(text))
    text = _BEARER.sub("Bearer <secret>", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}<secret>", text)
    return _LONG_TOKEN.sub("<secret>", _KEY_LIKE.sub("<secret>", text))


def scrub(text: str) -> str:
    """Remove what may identify a person or unlock something from error text."""
    text = _instance_secrets_removed(text)  # first: a secret may hold a quote
    text = _DB_DETAIL.sub(r"\1<detail>", _DB_KEY_VALUES.sub(r"Key (\1)=(<values>)", text))
    text = _QUOTED.sub(lambda m: f"{m.group(1)}<text, {len(m.group(2))} characters>{m.group(1)}", text)
    return scrub_secrets(text)[:MAX_MESSAGE_CHARS]


def scrub_path(path: str) -> str:
    path = _UUID.sub("<id>", path.split("?", 1)[0])
    return scrub(_NUMBER_SEGMENT.sub("/<n>", path))[:300]


def _frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    # lookup_lines=True reads the source lines; capture_locals stays off: locals hold content.
    return list(traceback.extract_tb(tb))


def _traceback_text(exc_type: type[BaseException], frames: list[traceback.FrameSummary]) -> str:
    lines = [
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line or ""}'.rstrip()
        for frame in frames
    ]
    return scrub_lines("\n".join(["Traceback (most recent call last):", *lines, exc_type.__qualname__]))


def scrub_lines(text: str) -> str:
    # Source lines are our own code; emails and secrets can still sit in a literal there.
    return _KEY_LIKE.sub("<secret>", _EMAIL.sub("<email>", text))


# The packages of this project (pyproject's `packages.find`): where a failure is ours to fix.
_OUR_PACKAGES = ("localai_site", "accounts", "chat", "models_hub", "billing")
FINGERPRINT_FRAMES = 5


def _is_ours(frame: traceback.FrameSummary) -> bool:
    path = Path(frame.filename)
    return (
        path.is_relative_to(settings.BASE_DIR)
        and path.relative_to(settings.BASE_DIR).parts[0] in _OUR_PACKAGES
    )


def fingerprint_of(exc_type: type[BaseException], frames: list[traceback.FrameSummary]) -> str:
    """The same failure: its exception type and the innermost frames of our code.

    Not the message (it differs by value for one bug) and not line numbers (they move with
    every edit of the file); without a frame of ours, the innermost frames of anyone's.
    """
    ours = [frame for frame in frames if _is_ours(frame)] or frames
    where = "|".join(f"{frame.filename}:{frame.name}" for frame in ours[-FINGERPRINT_FRAMES:])
    return hashlib.sha1(f"{exc_type.__module__}.{exc_type.__qualname__}|{where}".encode()).hexdigest()


def crash_report_save(*, record: logging.LogRecord) -> None:
    # Logging is configured (settings.LOGGING names this module's handler) before the app
    # registry is ready, when models cannot be imported yet: they are, at the first report.
    from .models import CrashReport, CrashSource

    exc_type, exc, tb = record.exc_info
    frames = _frames(tb)
    request = getattr(record, "request", None)
    is_task = record.name.startswith(("celery", "localai_site.core.tasks"))
    source = CrashSource.WEB if request is not None else CrashSource.TASK if is_task else CrashSource.OTHER
    now = timezone.now()
    fingerprint = fingerprint_of(exc_type, frames)
    latest: dict[str, Any] = {
        "last_seen_at": now,
        "source": source,
        "logger": record.name[:100],
        "exception_type": f"{exc_type.__module__}.{exc_type.__qualname__}"[:200],
        "message": scrub(str(exc)),
        "traceback": _traceback_text(exc_type, frames),
        "request_method": (getattr(request, "method", "") or "")[:10],
        "request_path": scrub_path(getattr(request, "path", "") or ""),
        "release": version("localai"),
    }
    repeat = CrashReport.objects.filter(fingerprint=fingerprint)
    # The row keeps the latest occurrence's text, so retention (by last seen) bounds its age.
    if repeat.update(count=F("count") + 1, **latest):
        return
    stored_this_hour = CrashReport.objects.filter(created_at__gt=now - timedelta(hours=1)).count()
    if stored_this_hour >= settings.CRASH_REPORTS_PER_HOUR:
        return
    try:
        with transaction.atomic():
            CrashReport.objects.create(fingerprint=fingerprint, created_at=now, **latest)
    except IntegrityError:  # another process stored the same failure a moment ago
        repeat.update(count=F("count") + 1, **latest)


class CrashReportHandler(logging.Handler):
    """Stores errors logged with a traceback (failed requests, failed tasks) as crash reports."""

    _busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or record.exc_info[0] is None or getattr(self._busy, "active", False):
            return
        # Not before the app registry is ready, and not inside a transaction that already
        # failed: the write would fail too and hide the original error.
        if not apps.ready or connection.needs_rollback:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._save(record)
        else:
            # In an event loop (a consumer, the server): the ORM is not allowed there, and
            # the loop must not wait for a write; a thread of its own stores the report.
            threading.Thread(target=self._save, args=(record, True), daemon=True).start()

    def _save(self, record: logging.LogRecord, own_thread: bool = False) -> None:
        self._busy.active = True
        try:
            crash_report_save(record=record)
        except Exception:
            self.handleError(record)
        finally:
            self._busy.active = False
            if own_thread:
                connections.close_all()

"""Log lines as JSON (``LOG_FORMAT=json``): one object a line, for a log collector.

Each line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and, when one was
logged, ``exception`` (the traceback). Message and traceback go through the crash reports'
``scrub_secrets`` first: keys, tokens, passwords and email addresses never reach the log.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from .crashes import scrub_secrets


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub_secrets(record.getMessage()),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = scrub_secrets(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = scrub_secrets(record.exc_text)
        if record.stack_info:
            line["stack"] = scrub_secrets(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False)

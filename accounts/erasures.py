"""The erasure log: which accounts were erased and when, under a pseudonym only.

A restore brings the database back as it was at the backup, and every account erased since
then must be erased again: a restore never brings an erased person back. So each erasure is
recorded twice, in the erasure's own transaction: a row (``ErasureRecord``, which backups
carry) and, once it commits, a line of ``<data folder>/erasures.jsonl``, which survives the
database being replaced and which a restore reads before replacing it. Neither names the
person: the subject is an HMAC, keyed by ``SECRET_KEY``, of the account's id and the moment it
joined, which together name one account and never change (an email address can).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from localai_site.core.privacy import user_erase

from .models import ErasureRecord, User

ERASURE_LOG_NAME = "erasures.jsonl"


def erasure_log_path() -> Path:
    return Path(settings.DATA_DIR) / ERASURE_LOG_NAME


def _subject(pk: int, joined: datetime, secret_key: str) -> str:
    identity = f"erased-account:{pk}:{joined.astimezone(UTC).isoformat()}"
    return hmac.new(secret_key.encode(), identity.encode(), hashlib.sha256).hexdigest()


def erasure_subject(user: User) -> str:
    return _subject(user.pk, user.date_joined, settings.SECRET_KEY)


def erasure_record(user: User) -> None:
    """Called by ``user_erase`` inside its transaction (``register_on_erase``)."""
    record, created = ErasureRecord.objects.get_or_create(subject=erasure_subject(user))
    if created:  # else erased again by a restore, which keeps the log itself
        transaction.on_commit(lambda: erasure_log_append({record.subject: record.erased_at}))


def erasure_log_append(entries: dict[str, datetime], *, path: Path | None = None) -> None:
    if not entries:
        return
    lines = "".join(
        json.dumps({"subject": subject, "erased_at": at.isoformat()}) + "\n"
        for subject, at in entries.items()
    )
    # One write of whole lines, made durable: the log is what outlives the database.
    fd = os.open(path or erasure_log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, lines.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def erasure_log_read(path: Path) -> dict[str, datetime]:
    """The log at ``path``; a line cut short by a crash mid-write is skipped."""
    if not path.exists():
        return {}
    found: dict[str, datetime] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            found[str(entry["subject"])] = datetime.fromisoformat(entry["erased_at"])
        except (ValueError, KeyError, TypeError):
            continue
    return found


def erasures_recorded() -> dict[str, datetime]:
    """The records of the database, or none where it has no such table yet (an empty one,
    or one from before the log existed)."""
    if ErasureRecord._meta.db_table not in connection.introspection.table_names():
        return {}
    try:
        return dict(ErasureRecord.objects.values_list("subject", "erased_at"))
    except DatabaseError:
        return {}


def erasures_reapply(*, known: dict[str, datetime], secret_keys: Iterable[str]) -> int:
    """Erase, with the real erasure, every account of this database that ``known`` lists
    (under any of ``secret_keys``); afterwards the database and the log file both list every
    erasure known. Returns how many accounts were erased."""
    ErasureRecord.objects.bulk_create(
        [ErasureRecord(subject=subject, erased_at=at) for subject, at in known.items()], ignore_conflicts=True
    )
    keys = list(dict.fromkeys(secret_keys))
    accounts = User.objects.values_list("pk", "date_joined")
    doomed = [pk for pk, joined in accounts if any(_subject(pk, joined, key) in known for key in keys)]
    for user in list(User.objects.filter(pk__in=doomed)):
        user_erase(user=user)
    in_file = erasure_log_read(erasure_log_path())
    erasure_log_append({s: at for s, at in erasures_recorded().items() if s not in in_file})
    return len(doomed)

"""The one-time setup token: whoever signs up with it while the instance has no admin
becomes the admin. ``localai serve`` prints it at start; it is kept in the data folder
(readable by the instance's user only), so it survives restarts until an admin exists."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings

from .selectors import admin_exists


def _token_file() -> Path:
    return Path(settings.DATA_DIR) / "setup-token"


def setup_token_issue() -> str:
    """The token in force, made the first time it is asked for."""
    path = _token_file()
    try:
        # O_EXCL: two processes starting at once must print the same token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def setup_token_matches(token: str) -> bool:
    try:
        stored = _token_file().read_text().strip()
    except FileNotFoundError:
        return False
    return bool(stored) and secrets.compare_digest(stored.encode(), token.encode())


def setup_token_discard() -> None:
    _token_file().unlink(missing_ok=True)


def setup_token_pending() -> str | None:
    """The token ``localai serve`` prints at start while the instance has no admin; once it
    has one (by signup or ``localai createsuperuser``), none is kept."""
    if admin_exists():
        setup_token_discard()
        return None
    return setup_token_issue()

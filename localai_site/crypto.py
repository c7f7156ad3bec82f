"""Encryption at rest for the few secrets the database holds (provider API keys)."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    keys = settings.ENCRYPTION_KEYS or [
        base64.urlsafe_b64encode(
            hashlib.sha256(f"localai-secrets:{settings.SECRET_KEY}".encode()).digest()
        ).decode()
    ]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "LOCALAI_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)."
        ) from exc


def secret_encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def secret_decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted: the encryption key it was made with is gone."
        ) from None


def secret_rotate(token: str) -> str:
    """Re-encrypt with the newest key."""
    return _fernet().rotate(token.encode()).decode()


def secret_hint(plain: str) -> str:
    """What may be shown of a secret: enough to tell two apart, never enough to use."""
    return f"…{plain[-4:]}" if len(plain) >= 12 else "…"

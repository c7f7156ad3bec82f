"""Encryption at rest for the few secrets the database holds (provider API keys, the hub's
access token).

A model keeps a secret in an ``EncryptedTextField``: the column holds a Fernet token, never
the secret, and the attribute holds the same token until ``secret_decrypt`` reads it where it
is used. ``secrets_rotate`` finds every such field by scanning the models, so a new secret
anywhere in the app is rotated by ``localai rotate_secrets`` without being listed. Secrets kept
elsewhere (inside a JSON column of a library's model) are rotated by the steps their app
registers (``register_secret_rotation``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

from .refusals import Refusal


class EncryptedTextField(models.TextField):
    """A Fernet token of a secret; empty when none is stored. Not editable in forms."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)


class SecretUnreadable(Refusal):
    def __init__(self) -> None:
        super().__init__(
            "secret_unreadable",
            "A stored secret cannot be decrypted: the encryption key it was made with is gone. "
            "An admin needs to enter it again.",
        )


def fernet_keys_check(keys: list[str]) -> None:
    """For settings: a key that is not a Fernet key stops start-up, naming the variable."""
    try:
        for key in keys:
            Fernet(key)
    except ValueError as exc:
        raise ImproperlyConfigured(
            "LOCALAI_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)."
        ) from exc


def fernet_keys_in_use(keys: list[str] | tuple[str, ...], secret_key: str) -> list[str]:
    """The Fernet keys secrets are encrypted with, newest first: the configured ones, or the
    one derived from ``secret_key``."""
    derived = base64.urlsafe_b64encode(hashlib.sha256(f"localai-secrets:{secret_key}".encode()).digest())
    return list(keys) or [derived.decode()]


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in fernet_keys_in_use(keys, secret_key)])


def _fernet() -> MultiFernet:
    # Keyed by the settings themselves: a changed key list takes effect at once.
    return _fernet_for(tuple(settings.ENCRYPTION_KEYS), settings.SECRET_KEY)


def secret_encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def secret_decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable() from None


def secret_hint(plain: str) -> str:
    """What may be shown of a secret: enough to tell two apart, never enough to use."""
    return f"…{plain[-4:]}" if len(plain) >= 12 else "…"


_rotations: list[Callable[[Callable[[str], str]], int]] = []


def register_secret_rotation(step: Callable[[Callable[[str], str]], int]) -> None:
    """For secrets that are not in an ``EncryptedTextField``: ``step`` gets the function that
    re-encrypts one token with the newest key, rewrites its rows with it and answers how many."""
    if step not in _rotations:
        _rotations.append(step)


def _token_rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode()


@transaction.atomic
def secrets_rotate() -> int:
    """Re-encrypt every stored secret with the newest key; returns how many."""
    rotated = sum(step(_token_rotate) for step in _rotations)
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, EncryptedTextField):
                continue
            rows = model._default_manager.exclude(**{field.name: ""}).values_list("pk", field.name)
            for pk, token in rows:
                model._default_manager.filter(pk=pk).update(**{field.name: _token_rotate(token)})
                rotated += 1
    return rotated

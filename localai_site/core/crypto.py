"""Encryption at rest for the few secrets the database holds (provider API keys, the hub's
access token).

A model keeps a secret in an ``EncryptedTextField``: the column holds a Fernet token, never
the secret, and the attribute holds the same token until ``secret_decrypt`` reads it where it
is used. ``secrets_rotate`` finds every such field by scanning the models, so a new secret
anywhere in the app is rotated by ``localai rotate_secrets`` without being listed.
"""

from __future__ import annotations

import base64
import hashlib
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


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    derived = base64.urlsafe_b64encode(hashlib.sha256(f"localai-secrets:{secret_key}".encode()).digest())
    return MultiFernet([Fernet(key) for key in keys] or [Fernet(derived)])


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


@transaction.atomic
def secrets_rotate() -> int:
    """Re-encrypt every stored secret with the newest key; returns how many."""
    rotated = 0
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, EncryptedTextField):
                continue
            rows = model._default_manager.exclude(**{field.name: ""}).values_list("pk", field.name)
            for pk, token in rows:
                model._default_manager.filter(pk=pk).update(
                    **{field.name: _fernet().rotate(token.encode()).decode()}
                )
                rotated += 1
    return rotated

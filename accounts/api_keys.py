"""Personal keys for the OpenAI-compatible API (the endpoints are chat's: ``chat.api``).

A key is ``lai_`` and 43 random characters. It is shown once, when it is made; the database
keeps an HMAC of it, keyed by the instance's secret, so a copy of the database (a backup, a
leak) holds nothing that opens the API, and the prefix that names it in lists. Finding a
key is one indexed lookup of its digest; nothing compares a key as typed.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.crypto import salted_hmac

from localai_site.core.refusals import Refusal

from .models import ApiKey, ApiKeyScope, User
from .selectors import instance_settings_get

KEY_PREFIX = "lai_"
MAX_KEYS = 50  # per person: enough for every tool, not a table to fill
# Last use is written at most this often per key: a busy script must not write a row per call.
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str  # the key itself: shown to its owner once, never stored


def api_key_digest(secret: str) -> str:
    return salted_hmac("localai.api-key", secret, algorithm="sha256").hexdigest()


def api_key_create(
    *,
    user: User,
    name: str,
    scope: str = ApiKeyScope.CHAT,
    local_only: bool = False,
    keep_history: bool = True,
    expires_at: datetime | None = None,
) -> NewApiKey:
    name = " ".join(str(name).split())[:80]
    if not name:
        raise Refusal("empty", "Give the key a name, such as the tool that will use it.")
    if scope not in ApiKeyScope.values:
        raise Refusal("bad_scope", "Choose what the key may do.")
    if expires_at is not None and expires_at <= timezone.now():
        raise Refusal("expired", "The expiry date is in the past.")
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_KEYS:
        raise Refusal("too_many_keys", f"You have {MAX_KEYS} keys; revoke one you no longer use first.")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=secret[: ApiKey.PREFIX_CHARS],
        digest=api_key_digest(secret),
        scope=scope,
        local_only=local_only,
        keep_history=keep_history,
        expires_at=expires_at,
    )
    return NewApiKey(key=key, secret=secret)


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def _address(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value or ""))
    except ValueError:
        return None


def api_key_authenticate(*, authorization: str, address: str | None) -> ApiKey:
    """The usable key in an ``Authorization: Bearer …`` header, its use recorded; refusals
    say ``api_off`` (the instance turned the API off), else ``invalid_api_key``."""
    if not instance_settings_get().api_enabled:
        raise Refusal("api_off", "The API is turned off on this instance.")
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith(KEY_PREFIX):
        raise Refusal(
            "invalid_api_key",
            "Send a personal API key as 'Authorization: Bearer lai_…' (Settings → API keys).",
        )
    key = ApiKey.objects.select_related("user").filter(digest=api_key_digest(secret)).first()
    if key is None or not key.user.is_active:
        raise Refusal("invalid_api_key", "This API key is not known here.")
    if key.revoked_at is not None:
        raise Refusal("invalid_api_key", "This API key was revoked.")
    if key.is_expired:
        raise Refusal("invalid_api_key", "This API key has expired.")
    now, address = timezone.now(), _address(address)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY or key.last_used_ip != address:
        key.last_used_at, key.last_used_ip = now, address
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=address)
    return key


def api_keys_of(*, user: User) -> list[ApiKey]:
    return list(ApiKey.objects.filter(user=user))

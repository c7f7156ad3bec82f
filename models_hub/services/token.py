"""The hub's access token, for gated and private repositories."""

from __future__ import annotations

from localai_site.core.crypto import secret_decrypt, secret_encrypt, secret_hint
from models_hub.models import HubSettings
from models_hub.selectors import hub_settings_get


def hub_token_get() -> str:
    """The stored token ("" when none); ``SecretUnreadable`` when its key is gone."""
    stored = hub_settings_get().access_token_encrypted
    return secret_decrypt(stored) if stored else ""


def hub_token_set(*, token: str) -> HubSettings:
    """Store (or, given "", forget) the access token for gated and private repositories."""
    hub = hub_settings_get()
    token = token.strip()
    hub.access_token_encrypted = secret_encrypt(token) if token else ""
    hub.access_token_hint = secret_hint(token) if token else ""
    hub.save()
    return hub

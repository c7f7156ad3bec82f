"""Cloud providers as an admin sets them up: saving one with its key, finding its models."""

from __future__ import annotations

from chat.models import CloudModel, CloudProvider
from chat.providers.cloud import PRESET_BASE_URLS, model_sees_images, provider_models_list
from chat.providers.images import model_makes_images, provider_makes_images
from localai_site.core.crypto import secret_encrypt, secret_hint


def cloud_provider_save(*, provider: CloudProvider, api_key: str | None) -> CloudProvider:
    """Save a provider; a new key replaces the stored one, an empty one keeps it."""
    if not provider.base_url:
        provider.base_url = PRESET_BASE_URLS.get(provider.kind, "")
    if api_key:
        provider.api_key_encrypted = secret_encrypt(api_key)
        provider.api_key_hint = secret_hint(api_key)
    provider.save()
    return provider


def cloud_models_discover(*, provider: CloudProvider) -> int:
    """Record the models the provider offers; new ones start disabled, seeing or making
    images when their name says so. Returns how many are new."""
    names = provider_models_list(provider)
    known = set(provider.models.values_list("name", flat=True))
    CloudModel.objects.bulk_create(
        [
            CloudModel(
                provider=provider,
                name=name,
                sees_images=model_sees_images(name),
                makes_images=provider_makes_images(provider.kind) and model_makes_images(name),
            )
            for name in names
            if name not in known
        ]
    )
    return len(set(names) - known)

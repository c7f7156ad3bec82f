from __future__ import annotations

from dataclasses import dataclass

from chat.models import CloudModel, Provider
from localai_site.core.queues import Queue
from models_hub.models import LocalModel
from models_hub.runtime import load_spec_for
from models_hub.selectors import local_model_default, local_model_get, local_models_ready
from models_hub.workers import local_queue_for

from .base import ChatProvider, ProviderError
from .cloud import OpenAICompatibleProvider
from .local import LocalLlamaProvider


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A model a user may pick, with who would receive the text."""

    model_id: str
    label: str
    provider: str  # "local", or the cloud provider's slug
    provider_name: str
    context_length: int
    local_model: LocalModel | None = None
    cloud_model: CloudModel | None = None

    @property
    def is_local(self) -> bool:
        return self.provider == Provider.LOCAL

    @property
    def sees_images(self) -> bool:
        model = self.local_model or self.cloud_model
        return model is not None and model.sees_images

    def queue(self) -> str:
        """Where its reply is made: cloud replies on the shared queue; local ones on the
        queue of a worker that already holds the model, when one is free."""
        return local_queue_for(self.local_model) if self.local_model is not None else Queue.CLOUD


def _local_choice(model: LocalModel) -> ModelChoice:
    return ModelChoice(
        model_id=model.model_id,
        label=model.name,
        provider=Provider.LOCAL,
        provider_name="This instance",
        context_length=load_spec_for(model).n_ctx,  # what the runtime actually loads
        local_model=model,
    )


def _cloud_choice(model: CloudModel) -> ModelChoice:
    return ModelChoice(
        model_id=model.model_id,
        label=model.label or model.name,
        provider=model.provider.slug,
        provider_name=model.provider.name,
        context_length=model.context_length,
        cloud_model=model,
    )


def _cloud_models_enabled():
    return CloudModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")


def model_resolve(model_id: str | None) -> ModelChoice | None:
    """The model behind an id (``local:<slug>`` or ``cloud:<provider>/<model>``); the
    default local model if empty. Disabled or unknown models resolve to None."""
    if not model_id:
        default = local_model_default()
        return _local_choice(default) if default else None
    kind, _, name = model_id.partition(":")
    if kind == "local" and name:
        model = local_model_get(slug=name)
        return _local_choice(model) if model else None
    if kind == "cloud" and "/" in name:
        provider_slug, _, model_name = name.partition("/")
        model = _cloud_models_enabled().filter(provider__slug=provider_slug, name=model_name).first()
        return _cloud_choice(model) if model else None
    return None


def models_offered(*, include_cloud: bool) -> tuple[list[ModelChoice], list[ModelChoice]]:
    """(local, cloud) choices for the model picker."""
    local = [_local_choice(model) for model in local_models_ready()]
    cloud = [_cloud_choice(model) for model in _cloud_models_enabled()] if include_cloud else []
    return local, cloud


def provider_for(choice: ModelChoice) -> ChatProvider:
    if choice.local_model is not None:
        return LocalLlamaProvider(choice.local_model)
    if choice.cloud_model is not None:
        return OpenAICompatibleProvider(choice.cloud_model.provider, choice.cloud_model.name)
    raise ProviderError(f"No provider can run {choice.model_id}.")

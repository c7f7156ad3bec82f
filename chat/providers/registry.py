from __future__ import annotations

from dataclasses import dataclass

from chat.models import Provider
from models_hub.models import LocalModel
from models_hub.selectors import local_model_default, local_model_get

from .base import ChatProvider, ProviderError


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A model a user may pick, with who would receive the text."""

    model_id: str
    label: str
    provider: str
    context_length: int
    local_model: LocalModel | None = None

    @property
    def queue(self) -> str:
        return "local" if self.provider == Provider.LOCAL else "cloud"


def _local_choice(model: LocalModel) -> ModelChoice:
    return ModelChoice(
        model_id=model.model_id,
        label=model.name,
        provider=Provider.LOCAL,
        context_length=model.context_length,
        local_model=model,
    )


def model_resolve(model_id: str | None) -> ModelChoice | None:
    """The model behind an id such as ``local:smollm2-135m-instruct``; the default if empty."""
    if not model_id:
        default = local_model_default()
        return _local_choice(default) if default else None
    kind, _, name = model_id.partition(":")
    if kind == "local" and name:
        model = local_model_get(slug=name)
        return _local_choice(model) if model else None
    return None


def provider_for(choice: ModelChoice) -> ChatProvider:
    if choice.local_model is not None:
        from .local import LocalLlamaProvider

        return LocalLlamaProvider(choice.local_model)
    raise ProviderError(f"No provider can run {choice.model_id}.")

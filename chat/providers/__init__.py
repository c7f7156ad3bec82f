"""Where replies come from. Each provider streams text for a list of chat turns."""

from .base import ChatProvider, ChatTurn, Delta, GenerationParams, ProviderError
from .registry import ModelChoice, model_resolve, provider_for

__all__ = [
    "ChatProvider",
    "ChatTurn",
    "Delta",
    "GenerationParams",
    "ModelChoice",
    "ProviderError",
    "model_resolve",
    "provider_for",
]

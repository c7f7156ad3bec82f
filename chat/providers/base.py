from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from localai_site.core.refusals import Refusal


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[str, ...] = ()  # data URLs (``data:image/png;base64,…``) sent with the text


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.7
    seed: int | None = None
    top_p: float | None = None  # None: the model's own default
    stop: tuple[str, ...] = ()  # the reply ends before any of these
    prompt_cache_key: str = ""  # the conversation's, for a provider that keeps its prompt between turns


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the reply. The last one a provider yields may carry only token counts."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # of the prompt's, found in the provider's cache


class ProviderError(Refusal):
    """A provider that could not write the reply, said for the person (no internals, no secrets)."""

    def __init__(self, message: str, code: str = "provider") -> None:
        super().__init__(code, message)


class ChatProvider(Protocol):
    name: str  # recorded on each message as who received its text

    def stream(
        self, turns: Sequence[ChatTurn], params: GenerationParams, cancel: threading.Event
    ) -> Iterator[Delta]:
        """Yield the reply as it is made; end early, still reporting usage, once ``cancel`` is set."""
        ...

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text takes for this model (for fitting the context window)."""
        ...

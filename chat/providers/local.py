from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from chat.models import Provider
from models_hub import runtime
from models_hub.models import LocalModel

from .base import ChatTurn, Delta, GenerationParams


class LocalLlamaProvider:
    """A GGUF model run by this instance's model runner. Nothing leaves the machine."""

    name = Provider.LOCAL

    def __init__(self, model: LocalModel) -> None:
        self.model = model

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Counted with the model's own tokenizer."""
        return runtime.token_counts(model=self.model, texts=list(texts))

    def stream(
        self, turns: Sequence[ChatTurn], params: GenerationParams, cancel: threading.Event
    ) -> Iterator[Delta]:
        pieces = runtime.reply_stream(
            model=self.model,
            messages=[{"role": turn.role, "content": turn.content} for turn in turns],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            seed=params.seed,
            cancelled=cancel.is_set,
        )
        for piece in pieces:
            if isinstance(piece, str):
                yield Delta(text=piece)
            else:
                yield Delta(prompt_tokens=piece[0], completion_tokens=piece[1])

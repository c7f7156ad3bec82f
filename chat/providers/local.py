from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from chat.models import Provider
from models_hub import runtime
from models_hub.models import LocalModel

from .base import ChatTurn, Delta, GenerationParams


def _message(turn: ChatTurn, *, vision: bool) -> dict:
    """A turn as the model's chat template reads it. A vision model gets every turn as parts
    (its template expects them: SmolVLM's writes a plain string as nothing), its images
    first, as the data URIs built from the stored upload: never a path or a URL."""
    if not vision:
        return {"role": turn.role, "content": turn.content}
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": url}} for url in turn.images]
    parts.append({"type": "text", "text": turn.content})
    return {"role": turn.role, "content": parts}


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
            messages=[_message(turn, vision=self.model.sees_images) for turn in turns],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            seed=params.seed,
            top_p=params.top_p,
            stop=params.stop,
            prompt_cache_key=params.prompt_cache_key,
            cancelled=cancel.is_set,
        )
        for piece in pieces:
            if isinstance(piece, str):
                yield Delta(text=piece)
            else:
                yield Delta(prompt_tokens=piece[0], completion_tokens=piece[1], cached_tokens=piece[2])

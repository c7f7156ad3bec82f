from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import TYPE_CHECKING

from chat.models import Provider
from models_hub.models import LocalModel
from models_hub.runtime import ModelMemoryError, load_spec_for, model_in_use

from .base import ChatTurn, Delta, GenerationParams, ProviderError

if TYPE_CHECKING:
    from llama_cpp import Llama


class LocalLlamaProvider:
    """Runs a GGUF model in this process with llama-cpp-python. Nothing leaves the machine."""

    name = Provider.LOCAL

    def __init__(self, model: LocalModel) -> None:
        self.model = model
        self._spec = load_spec_for(model)

    def token_count(self, text: str) -> int:
        """Counted with the model's own tokenizer."""
        try:
            with model_in_use(self._spec, exclusive=False) as llama:
                return len(llama.tokenize(text.encode(), add_bos=False, special=False))
        except ModelMemoryError as exc:
            raise ProviderError(str(exc)) from exc

    def stream(
        self, turns: Sequence[ChatTurn], params: GenerationParams, cancel: threading.Event
    ) -> Iterator[Delta]:
        try:
            with model_in_use(self._spec) as llama:
                yield from _generate(llama, turns, params, cancel)
        except ModelMemoryError as exc:
            raise ProviderError(str(exc)) from exc


def _generate(
    llama: Llama, turns: Sequence[ChatTurn], params: GenerationParams, cancel: threading.Event
) -> Iterator[Delta]:
    prompt_tokens: int | None = None
    finish_reason = None
    try:
        chunks = llama.create_chat_completion(
            messages=[{"role": turn.role, "content": turn.content} for turn in turns],
            stream=True,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            seed=params.seed,
        )
        with closing(chunks):
            for chunk in chunks:
                if prompt_tokens is None:
                    # The prompt is evaluated and the first token not yet: the
                    # context holds exactly the prompt.
                    prompt_tokens = llama.n_tokens
                choice = chunk["choices"][0]
                finish_reason = choice.get("finish_reason") or finish_reason
                text = choice["delta"].get("content")
                if text:
                    yield Delta(text=text)
                if cancel.is_set():
                    break
    except ValueError as exc:  # llama-cpp-python's word for "prompt too long"
        raise ProviderError(f"The conversation does not fit the model's context ({exc}).") from exc
    if prompt_tokens is not None:
        # Every generated token but the newest is evaluated into the context.
        # When the model chose to stop, its newest token is the end-of-turn
        # marker, which is not part of the reply.
        evaluated = llama.n_tokens - prompt_tokens
        completion = evaluated + (0 if finish_reason == "stop" else 1)
        yield Delta(prompt_tokens=prompt_tokens, completion_tokens=max(completion, 0))

"""Cloud replies through one OpenAI-compatible client (the ``openai`` SDK), one base URL
per provider. Errors become messages a person can act on; keys never appear in them."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence

from django.conf import settings

from chat.models import CloudProvider, CloudProviderKind
from localai_site.core.crypto import secret_decrypt

from .base import ChatTurn, Delta, GenerationParams, ProviderError

PRESET_BASE_URLS: dict[str, str] = {
    CloudProviderKind.OPENAI: "https://api.openai.com/v1",
    CloudProviderKind.ANTHROPIC: "https://api.anthropic.com/v1/",
    CloudProviderKind.GEMINI: "https://generativelanguage.googleapis.com/v1beta/openai/",
    CloudProviderKind.GROK: "https://api.x.ai/v1",
    CloudProviderKind.DEEPSEEK: "https://api.deepseek.com/v1",
}

# Which models accept image parts: /v1/models does not say, so discovery guesses from the
# name (the admin corrects it per model). Families that see images, wherever the name
# carries a prefix (Gemini's "models/…"), minus the speech, search and embedding variants.
_SEES_IMAGES = re.compile(
    r"(?:^|/)(?:chatgpt-4o|gpt-4o|gpt-4\.1|gpt-4-turbo|gpt-5|o1(?!-mini)|o3(?!-mini)|o4-mini"
    r"|claude-(?!2|instant)|gemini-|grok-4|grok-.*vision|pixtral|llava)|vision|-vl\b",
    re.IGNORECASE,
)
_NOT_A_CHAT_MODEL = re.compile(r"tts|transcribe|audio|realtime|embedding|search|image-", re.IGNORECASE)


def model_sees_images(name: str) -> bool:
    """The discovery default for ``CloudModel.sees_images``."""
    return bool(_SEES_IMAGES.search(name)) and not _NOT_A_CHAT_MODEL.search(name)


def _message(turn: ChatTurn) -> dict:
    """A turn as the chat completions API takes it; images as base64 data URLs, never a
    URL of ours (the provider could not fetch it, and must not learn it)."""
    if not turn.images:
        return {"role": turn.role, "content": turn.content}
    parts: list[dict] = [{"type": "text", "text": turn.content}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in turn.images]
    return {"role": turn.role, "content": parts}


def _optional(**values: object) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def _client(provider: CloudProvider):
    return _client_for(provider.base_url, provider.api_key_encrypted, settings.CLOUD_TIMEOUT_S)


@functools.lru_cache(maxsize=64)
def _client_for(base_url: str, api_key_encrypted: str, timeout: float):
    """One client per provider settings and process: making one builds an SSL context
    (~20 ms of CPU), and its connection pool is shared by every reply (it is thread-safe)."""
    from openai import OpenAI

    api_key = secret_decrypt(api_key_encrypted) if api_key_encrypted else "none"
    # Retries are ours: only failures to connect are retried, never a reply half sent.
    return OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)


def _explain(provider: CloudProvider, exc: Exception) -> ProviderError:
    """A message for the chat; the SDK's own text may quote the request, so it is not used."""
    import openai

    name = provider.name
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        text = f"{name} refused the API key. An admin needs to check it."
    elif isinstance(exc, openai.RateLimitError):
        text = f"{name} is limiting requests right now. Try again in a moment."
    elif isinstance(exc, openai.APITimeoutError):
        text = f"{name} did not answer in time."
    elif isinstance(exc, openai.APIConnectionError):
        text = f"Could not reach {name}."
    elif isinstance(exc, openai.NotFoundError):
        text = f"{name} does not offer this model (any more)."
    elif isinstance(exc, openai.APIStatusError):
        text = f"{name} answered with an error (HTTP {exc.status_code})."
    else:
        text = f"The connection to {name} broke off."
    return ProviderError(text)


def _is_connect_failure(exc: Exception) -> bool:
    import openai

    return isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)


class OpenAICompatibleProvider:
    def __init__(self, provider: CloudProvider, model_name: str) -> None:
        self.provider = provider
        self.model_name = model_name
        self.name = provider.slug

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        # Providers do not share their tokenizers; about four characters a token is the
        # usual rule, rounded up so that a prompt errs on the side of fitting.
        return [len(text) // 3 + 1 for text in texts]

    def _open_stream(self, turns: Sequence[ChatTurn], params: GenerationParams):
        client = _client(self.provider)
        attempts = settings.CLOUD_CONNECT_ATTEMPTS
        for attempt in range(attempts):
            try:
                return client.chat.completions.create(
                    model=self.model_name,
                    messages=[_message(t) for t in turns],
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    # Only what was asked for: not every provider takes these.
                    **_optional(top_p=params.top_p, stop=list(params.stop) or None, seed=params.seed),
                )
            except Exception as exc:
                if not _is_connect_failure(exc) or attempt == attempts - 1:
                    raise _explain(self.provider, exc) from exc
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def stream(
        self, turns: Sequence[ChatTurn], params: GenerationParams, cancel: threading.Event
    ) -> Iterator[Delta]:
        stream = self._open_stream(turns, params)
        usage = None
        finish_reason = None
        pieces = 0
        try:
            with stream:
                # The raw events, parsed with json: the SDK's typed chunk objects cost
                # ~75 µs of CPU each, several times the rest of the path per token.
                for line in stream.response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise ProviderError(f"{self.provider.name} stopped with an error.")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    choices = chunk.get("choices")
                    if not choices:
                        continue
                    finish_reason = choices[0].get("finish_reason") or finish_reason
                    text = (choices[0].get("delta") or {}).get("content")
                    if text:
                        pieces += 1
                        yield Delta(text=text)
                    if cancel.is_set():
                        break
        except Exception as exc:
            raise _explain(self.provider, exc) from exc
        if finish_reason is None and not cancel.is_set():
            # The connection closed without the provider saying the reply was complete.
            raise ProviderError(f"The connection to {self.provider.name} broke off.")
        if usage is not None:
            yield Delta(
                prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
            )
        else:
            # Endpoints without usage reporting: each streamed piece is about one token.
            yield Delta(completion_tokens=pieces)


def provider_models_list(provider: CloudProvider) -> list[str]:
    """The model ids the provider offers (``GET /v1/models``)."""
    try:
        return sorted(model.id for model in _client(provider).models.list())
    except Exception as exc:
        raise _explain(provider, exc) from exc


def provider_transcribe(provider: CloudProvider, audio: bytes, *, file_name: str) -> str:
    """The words of a recording, by the provider's transcription model (``POST
    /audio/transcriptions``); failures are said as for a reply. ``file_name`` is all the
    provider learns besides the audio: its extension says the format (OpenAI reads it)."""
    try:
        answer = _client(provider).audio.transcriptions.create(
            model=provider.transcription_model, file=(file_name, audio), response_format="json"
        )
    except Exception as exc:
        raise _explain(provider, exc) from exc
    return answer.text.strip()

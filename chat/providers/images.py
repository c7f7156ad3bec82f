"""Where images come from: a prompt (and, for an edit, a source image, a mask and reference
images) sent to an image provider, image bytes back. OpenAI's Images API and any endpoint
that copies it (``/v1/images/generations``, ``/v1/images/edits``) go through the ``openai``
SDK; Google's Gemini image models through ``google-genai``'s ``generate_content``.

Errors become a ``ProviderError`` whose code says what happened in a word
(``content_policy``, ``rate_limited``, ``timeout``, ``provider``) and whose message says it
for the person; keys and the SDKs' own texts (which may quote the request) never appear.
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from chat.models import CloudModel, CloudProvider, CloudProviderKind
from localai_site.core.crypto import secret_decrypt

from .base import ProviderError
from .cloud import _client_for

# The shapes the gallery offers, as each API asks for them.
SHAPES = ("square", "landscape", "portrait")
_OPENAI_SIZES = {"square": "1024x1024", "landscape": "1536x1024", "portrait": "1024x1536"}
_GEMINI_ASPECTS = {"square": "1:1", "landscape": "3:2", "portrait": "2:3"}
QUALITIES = ("low", "medium", "high")

# Discovery's guess for ``CloudModel.makes_images`` (the admin corrects it): the GPT Image
# models, Gemini's image models, Grok's, and the usual open image models behind a custom
# endpoint. DALL·E and Imagen are retired from the APIs, so they are not offered.
_MAKES_IMAGES = re.compile(
    r"(?:^|/)(?:gpt-image-|gemini-[\w.-]*-image|grok-[\w.-]*image)|stable-diffusion|sdxl|\bflux",
    re.IGNORECASE,
)


def model_makes_images(name: str) -> bool:
    return bool(_MAKES_IMAGES.search(name))


def provider_makes_images(kind: str) -> bool:
    """Whether a kind of provider has an image API we speak."""
    return kind not in (CloudProviderKind.ANTHROPIC, CloudProviderKind.DEEPSEEK)


@dataclass(frozen=True, slots=True)
class ImageRequest:
    prompt: str
    shape: str = "square"
    quality: str = ""  # empty: the provider's default
    count: int = 1
    image: bytes | None = None  # PNG to edit
    mask: bytes | None = None  # PNG, transparent where the image may change
    references: tuple[bytes, ...] = ()  # more PNGs to draw from

    @property
    def is_edit(self) -> bool:
        return self.image is not None


class ImageProvider(Protocol):
    name: str  # the provider's slug, recorded as who received the prompt

    def size_for(self, request: ImageRequest) -> str:
        """What the provider is asked for: a size in pixels or an aspect ratio."""
        ...

    def images_make(self, request: ImageRequest) -> list[bytes]:
        """The images' bytes as the provider sent them (decoded from base64, not yet checked)."""
        ...


def _refused(name: str, code: str) -> ProviderError:
    texts = {
        "content_policy": f"{name} refused the prompt under its content policy. Change it and try again.",
        "rate_limited": f"{name} is limiting requests right now. Try again in a moment.",
        "timeout": f"{name} did not answer in time.",
        "unreachable": f"Could not reach {name}.",
        "key": f"{name} refused the API key. An admin needs to check it.",
        "no_model": f"{name} does not offer this image model (any more).",
        "no_image": f"{name} answered without an image.",
        "broken": f"The connection to {name} broke off.",
    }
    # The kinds a person acts on differently keep their own code; the rest are provider errors.
    kept = code if code in ("content_policy", "rate_limited", "timeout") else "provider"
    return ProviderError(texts[code], kept)


def _kinds(exc: BaseException | None) -> set[str]:
    # The SDKs' HTTP clients (httpx, httpx2) raise their own transport errors: judged by name.
    return {type_.__name__ for type_ in type(exc).__mro__} if exc is not None else set()


def _is_connect_error(exc: BaseException | None) -> bool:
    return "ConnectError" in _kinds(exc)


def _b64(data: str | None, name: str) -> bytes:
    try:
        return base64.b64decode(data or "", validate=True)
    except ValueError:
        raise _refused(name, "no_image") from None


# --- OpenAI's Images API, and endpoints that copy it ------------------------------------


_OPENAI_POLICY_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}


def _openai_explain(name: str, exc: Exception) -> ProviderError:
    import openai

    if isinstance(exc, openai.BadRequestError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
        if error.get("code") in _OPENAI_POLICY_CODES or "safety" in str(error.get("type", "")):
            return _refused(name, "content_policy")
        return ProviderError(f"{name} did not accept the request (HTTP 400).")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return _refused(name, "key")
    if isinstance(exc, openai.RateLimitError):
        return _refused(name, "rate_limited")
    if isinstance(exc, openai.APITimeoutError):
        return _refused(name, "timeout")
    if isinstance(exc, openai.APIConnectionError):
        # Also what the SDK raises when an answer is cut off: the cause tells them apart.
        return _refused(name, "unreachable" if _is_connect_error(exc.__cause__) else "broken")
    if isinstance(exc, openai.NotFoundError):
        return _refused(name, "no_model")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(f"{name} answered with an error (HTTP {exc.status_code}).")
    return _refused(name, "broken")


class OpenAIImagesProvider:
    def __init__(self, provider: CloudProvider, model_name: str) -> None:
        self.provider = provider
        self.model_name = model_name
        self.name = provider.slug

    def size_for(self, request: ImageRequest) -> str:
        return _OPENAI_SIZES[request.shape]

    def images_make(self, request: ImageRequest) -> list[bytes]:
        client = _client_for(
            self.provider.base_url, self.provider.api_key_encrypted, settings.IMAGE_TIMEOUT_S
        )
        options: dict = {"model": self.model_name, "prompt": request.prompt, "n": request.count}
        options["size"] = self.size_for(request)
        if self.provider.kind == CloudProviderKind.OPENAI:
            if request.quality:
                options["quality"] = request.quality  # the GPT Image models answer base64 anyway
        else:
            options["response_format"] = "b64_json"  # others answer with a link by default
        try:
            if request.is_edit:
                assert request.image is not None
                images = [request.image, *request.references]
                files = [(f"image-{index}.png", data, "image/png") for index, data in enumerate(images)]
                if request.mask is not None:
                    options["mask"] = ("mask.png", request.mask, "image/png")
                answer = client.images.edit(image=files, **options)
            else:
                answer = client.images.generate(**options)
        except Exception as exc:
            raise _openai_explain(self.provider.name, exc) from exc
        made = [_b64(item.b64_json, self.provider.name) for item in answer.data or [] if item.b64_json]
        if not made:
            raise _refused(self.provider.name, "no_image")
        return made


# --- Google's Gemini image models -----------------------------------------------------


def _gemini_root(base_url: str) -> str:
    """The API's root for google-genai: the preset base URL is Gemini's OpenAI-compatible one
    (``…/v1beta/openai/``), and the SDK adds the version itself."""
    root = re.sub(r"/v1(?:beta|alpha)?(?:/openai)?/?$", "/", base_url.rstrip("/") + "/")
    return root if root.endswith("/") else root + "/"


@functools.lru_cache(maxsize=16)
def _gemini_client(base_url: str, api_key_encrypted: str, timeout: float):
    from google import genai
    from google.genai import types

    api_key = secret_decrypt(api_key_encrypted) if api_key_encrypted else "none"
    options = types.HttpOptions(base_url=_gemini_root(base_url), timeout=int(timeout * 1000))
    return genai.Client(api_key=api_key, http_options=options)


_GEMINI_REFUSALS = {
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_PROHIBITED_CONTENT",
}


def _gemini_explain(name: str, exc: Exception) -> ProviderError:
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        if exc.code == 429:
            return _refused(name, "rate_limited")
        if exc.code in (401, 403):
            return _refused(name, "key")
        if exc.code == 404:
            return _refused(name, "no_model")
        if exc.code == 400 and "safety" in str(exc.message or "").lower():
            return _refused(name, "content_policy")
        return ProviderError(f"{name} answered with an error (HTTP {exc.code}).")
    if any("Timeout" in kind for kind in _kinds(exc)):
        return _refused(name, "timeout")
    return _refused(name, "unreachable" if _is_connect_error(exc) else "broken")


class GeminiImagesProvider:
    def __init__(self, provider: CloudProvider, model_name: str) -> None:
        self.provider = provider
        self.model_name = model_name
        self.name = provider.slug

    def size_for(self, request: ImageRequest) -> str:
        return _GEMINI_ASPECTS[request.shape]

    def _contents(self, request: ImageRequest) -> list:
        from google.genai import types

        if not request.is_edit:
            return [request.prompt]
        assert request.image is not None
        parts: list = [types.Part.from_bytes(data=request.image, mime_type="image/png")]
        text = request.prompt
        if request.mask is not None:
            # Gemini takes no mask parameter: the mask goes as a picture, said in words.
            parts.append(types.Part.from_bytes(data=request.mask, mime_type="image/png"))
            text = (
                "Edit the first image. The second image is a mask: change only where it is "
                f"transparent and keep the rest exactly as it is. The change: {text}"
            )
        parts += [types.Part.from_bytes(data=data, mime_type="image/png") for data in request.references]
        return [*parts, text]

    def _one(self, client, request: ImageRequest) -> list[bytes]:
        from google.genai import types

        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=self.size_for(request)),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),  # no tools here
        )
        try:
            answer = client.models.generate_content(
                model=self.model_name, contents=self._contents(request), config=config
            )
        except Exception as exc:
            raise _gemini_explain(self.provider.name, exc) from exc
        feedback = answer.prompt_feedback
        if feedback is not None and feedback.block_reason:
            raise _refused(self.provider.name, "content_policy")
        images: list[bytes] = []
        for candidate in answer.candidates or []:
            if candidate.finish_reason is not None and str(candidate.finish_reason.name) in _GEMINI_REFUSALS:
                raise _refused(self.provider.name, "content_policy")
            parts = candidate.content.parts if candidate.content else None
            images += [
                part.inline_data.data for part in parts or [] if part.inline_data and part.inline_data.data
            ]
        if not images:
            raise _refused(self.provider.name, "no_image")
        return images

    def images_make(self, request: ImageRequest) -> list[bytes]:
        client = _gemini_client(
            self.provider.base_url, self.provider.api_key_encrypted, settings.IMAGE_TIMEOUT_S
        )
        made: list[bytes] = []
        for _ in range(request.count):  # one image per call is what the image models make
            made += self._one(client, request)[:1]
        return made


def image_provider_for(model: CloudModel) -> ImageProvider:
    provider = model.provider
    if not provider_makes_images(provider.kind):
        raise ProviderError(f"{provider.name} has no image API that this instance speaks.")
    if provider.kind == CloudProviderKind.GEMINI:
        return GeminiImagesProvider(provider, model.name)
    return OpenAIImagesProvider(provider, model.name)

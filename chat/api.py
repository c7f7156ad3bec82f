"""The OpenAI-compatible API, for tools that speak it: ``GET /v1/models`` and
``POST /v1/chat/completions``, with a personal key (``accounts.api_keys``).

Not a second reply pipeline: a completion is a conversation of the key's owner, started by
``services.completion_start`` under the browser's rules, written by the same workers, and
read here as it is written from the live events the chat socket hears (``chat.live``
through the channel layer), the database being the truth whenever an event is missed. What
a tool is told when refused is OpenAI's shape, ``{"error": {"message", "type", "code"}}``,
with the HTTP status its SDK expects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.api_keys import api_key_authenticate
from accounts.models import ApiKey
from localai_site.core.realtime import EVENT_TYPE
from localai_site.core.refusals import Refusal
from localai_site.core.sockets import database_work

from . import live, services
from .events import utf16_len
from .models import ACTIVE_STATUSES, Message, MessageStatus, Role
from .providers import ChatTurn
from .providers.registry import models_offered

logger = logging.getLogger(__name__)

# HTTP status of each refusal a tool can meet; anything else is a bad request.
_STATUS = {
    "invalid_api_key": 401,
    "api_off": 403,
    "insufficient_scope": 403,
    "restricted": 403,
    "local_only": 403,
    "local_only_key": 403,
    "cloud_off": 403,
    "stays_local": 403,
    "plan_model": 403,
    "unknown_model": 404,
    "no_model": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "quota_exceeded": 429,
    "too_many_replies": 429,
    "reply_failed": 502,
    "model_unhealthy": 503,
    "queue_unreachable": 503,
}
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
}
ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}
MAX_STOP_SEQUENCES = 4
QUIET_S = 1.0  # without a live event for this long, the database is read


def _error_body(refusal: Refusal) -> tuple[int, dict[str, Any]]:
    status = _STATUS.get(refusal.code, 400)
    kind = _TYPES.get(status, "invalid_request_error")
    return status, {"error": {"message": refusal.message, "type": kind, "param": None, "code": refusal.code}}


def _error(refusal: Refusal) -> JsonResponse:
    status, body = _error_body(refusal)
    return JsonResponse(body, status=status)


def _models_for(key: ApiKey) -> list[dict[str, Any]]:
    user = key.user
    local, cloud = models_offered(include_cloud=services.cloud_allowed(user=user) and not key.local_only)
    return [
        {
            "id": choice.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "localai" if choice.is_local else choice.provider,
            "name": choice.label,
            "context_length": choice.context_length,
        }
        for choice in [*local, *cloud]
    ]


def _key_authenticate(request: HttpRequest) -> ApiKey:
    return api_key_authenticate(
        authorization=request.headers.get("Authorization", ""), address=request.META.get("REMOTE_ADDR")
    )


@csrf_exempt
def models_list(request: HttpRequest) -> HttpResponse:
    """The models the key's owner may use in the browser (local ones only for a local-only key)."""
    if request.method != "GET":
        return _error(Refusal("method_not_allowed", "Use GET for /v1/models."))
    try:
        key = _key_authenticate(request)
    except Refusal as refusal:
        return _error(refusal)
    return JsonResponse({"object": "list", "data": _models_for(key)})


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    turns: tuple[ChatTurn, ...]
    sampling: dict[str, Any]
    stream: bool
    include_usage: bool


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise Refusal("bad_request", f"'{name}' must be a number from {low:g} to {high:g}.")
    return float(value)


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refusal("bad_request", f"'{name}' must be a whole number from {low} to {high}.")
    return value


def _text_of(content: object, index: int) -> str:
    """A message's text: a string, or text parts (images are not taken through the API)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise Refusal("bad_request", f"messages[{index}]: only text parts are taken here.")
            parts.append(part["text"])
        return "\n".join(parts)
    if content is None:
        return ""
    raise Refusal("bad_request", f"messages[{index}].content must be a string or a list of text parts.")


def _turns(messages: object) -> tuple[ChatTurn, ...]:
    if not isinstance(messages, list) or not messages:
        raise Refusal("bad_request", "'messages' must be a non-empty list.")
    turns = []
    for index, message in enumerate(messages):
        said = message.get("role") if isinstance(message, dict) else None
        role = ROLES.get(said) if isinstance(said, str) else None
        if role is None:
            raise Refusal("bad_request", f"messages[{index}].role must be system, user or assistant.")
        turns.append(ChatTurn(role=role, content=_text_of(message.get("content"), index)))
    return tuple(turns)


def _stop(value: object) -> list[str]:
    stop = [value] if isinstance(value, str) else value if value is not None else []
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_SEQUENCES
        or not all(isinstance(item, str) and item for item in stop)
    ):
        raise Refusal(
            "bad_request", f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings."
        )
    return stop


def completion_request_parse(raw: bytes) -> CompletionRequest:
    """The request as the API takes it, or a refusal saying which field is wrong."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal("bad_request", "The body must be JSON.") from None
    if not isinstance(body, dict):
        raise Refusal("bad_request", "The body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Refusal("bad_request", "'model' is required: one of the ids /v1/models lists.")
    if body.get("n", 1) != 1:
        raise Refusal("bad_request", "Only one choice per request ('n': 1) is made here.")
    if body.get("tools") or body.get("functions"):
        raise Refusal("bad_request", "Tools and function calls are not supported here.")
    stream = body.get("stream", False)
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise Refusal("bad_request", "'stream' must be true or false, 'stream_options' an object.")
    max_tokens = _integer(body, "max_completion_tokens", 1, 1_000_000)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 1_000_000)
    sampling = {
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1),
        "max_tokens": max_tokens,
        "seed": _integer(body, "seed", -(2**63), 2**63 - 1),
        "stop": _stop(body.get("stop")),
    }
    return CompletionRequest(
        model=model,
        turns=_turns(body.get("messages")),
        sampling={name: value for name, value in sampling.items() if value not in (None, [])},
        stream=stream,
        include_usage=bool(options.get("include_usage")),
    )


def _reply_state(reply_id: int) -> Message | None:
    return Message.objects.filter(pk=reply_id).only(*_STATE_FIELDS).first()


_STATE_FIELDS = (
    "status",
    "content",
    "error",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "sampling",
)


async def _follow(reply: Message, group: str) -> AsyncIterator[str | Message]:
    """The reply's text as it is written, piece by piece, then the finished reply as saved.

    Deltas come from the conversation's group; one that does not follow on from what was
    read (sent before this joined, or lost: the layer delivers at most once) is made up from
    the live text; quiet, or a status event, sends this to the database.
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    text, units = "", 0
    try:
        event: dict | None = None
        while True:
            payload = json.loads(event["text"]) if event and event.get("type") == EVENT_TYPE else {}
            if payload.get("type") == "delta" and payload.get("id") == reply.pk:
                piece = payload["text"]
                if payload["offset"] == units:
                    text, units = text + piece, units + utf16_len(piece)
                    yield piece
                elif payload["offset"] + utf16_len(piece) > units:  # something was missed
                    so_far = (await database_work(live.live_texts_get)([reply.pk])).get(reply.pk, "")
                    if len(so_far) > len(text) and so_far.startswith(text):
                        yield so_far[len(text) :]
                        text, units = so_far, utf16_len(so_far)
            else:
                saved = await database_work(_reply_state)(reply.pk)
                if saved is None:
                    raise Refusal("reply_failed", "The conversation was deleted while its reply was written.")
                if saved.status not in ACTIVE_STATUSES:
                    if len(saved.content) > len(text) and saved.content.startswith(text):
                        yield saved.content[len(text) :]
                    yield saved
                    return
            try:
                event = await asyncio.wait_for(layer.receive(channel), timeout=QUIET_S)
            except TimeoutError:
                event = None
    finally:
        await layer.group_discard(group, channel)


def _finish_reason(reply: Message) -> str:
    limit = min(
        (reply.sampling or {}).get("max_tokens") or settings.CHAT_MAX_TOKENS, settings.CHAT_MAX_TOKENS
    )
    return "length" if (reply.completion_tokens or 0) >= limit else "stop"


def _usage(reply: Message) -> dict:
    prompt, completion = reply.prompt_tokens or 0, reply.completion_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens or 0},
    }


def _reply_refusal(reply: Message) -> Refusal:
    return Refusal("reply_failed", reply.error or "The model failed while writing this reply.")


def _after(*, key: ApiKey, reply: Message, done: bool) -> None:
    """A reply nobody reads any more is stopped; a key that keeps no history forgets it."""
    conversation = reply.conversation
    if not done and Message.objects.filter(pk=reply.pk, status__in=ACTIVE_STATUSES).exists():
        services.reply_stop(conversation=conversation, message_id=reply.pk)
    if not key.keep_history:
        services.conversation_delete(conversation=conversation)


class _Completion:
    def __init__(self, key: ApiKey, request: CompletionRequest, reply: Message) -> None:
        self.key, self.request, self.reply = key, request, reply
        self.id = f"chatcmpl-{reply.pk}"
        self.created = int(time.time())
        self.group = reply.conversation.group_name

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.request.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return _sse(chunk)

    async def events(self) -> AsyncIterator[str]:
        done = False
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            async for piece in _follow(self.reply, self.group):
                if isinstance(piece, str):
                    yield self._chunk({"content": piece})
                    continue
                if piece.status == MessageStatus.FAILED:
                    yield _sse(_error_body(_reply_refusal(piece))[1])
                else:
                    yield self._chunk({}, _finish_reason(piece))
                    if self.request.include_usage:
                        usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
                        yield _sse(
                            {**usage, "model": self.request.model, "choices": [], "usage": _usage(piece)}
                        )
                done = True
            yield "data: [DONE]\n\n"
        except Refusal as refusal:
            yield _sse(_error_body(refusal)[1])
        finally:
            await database_work(_after)(key=self.key, reply=self.reply, done=done)

    async def whole(self) -> HttpResponse:
        final: Message | None = None
        try:
            async for piece in _follow(self.reply, self.group):
                if isinstance(piece, Message):
                    final = piece  # and the last
        except Refusal as refusal:
            return _error(refusal)
        finally:
            await database_work(_after)(key=self.key, reply=self.reply, done=final is not None)
        if final is None:
            return _error(Refusal("reply_failed", "The reply ended without being saved."))
        piece = final
        if piece.status == MessageStatus.FAILED:
            return _error(_reply_refusal(piece))
        return JsonResponse(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.request.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": piece.content},
                        "finish_reason": _finish_reason(piece),
                    }
                ],
                "usage": _usage(piece),
            }
        )


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _start(key: ApiKey, request: CompletionRequest) -> Message:
    reply = services.completion_start(
        key=key, model_id=request.model, turns=request.turns, sampling=request.sampling
    )
    if reply.status == MessageStatus.FAILED:  # the task queue could not take it
        raise Refusal("queue_unreachable", reply.error)
    return Message.objects.select_related("conversation").get(pk=reply.pk)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return _error(Refusal("method_not_allowed", "Use POST for /v1/chat/completions."))
    try:
        key = await database_work(_key_authenticate)(request)
        try:
            raw = request.body
        except RequestDataTooBig:
            raise Refusal("too_large", "The request is larger than this instance takes.") from None
        asked = completion_request_parse(raw)
        reply = await database_work(_start)(key, asked)
    except Refusal as refusal:
        return _error(refusal)
    completion = _Completion(key, asked, reply)
    if not asked.stream:
        return await completion.whole()
    response = StreamingHttpResponse(completion.events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx passes each event on at once
    return response

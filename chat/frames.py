"""Validation of what a browser sends over the chat socket: any frame, whatever its shape,
becomes one of the frames below or a ``Refusal`` with a stable code, before it reaches the
database (which would fail on NUL characters, unpaired surrogates or ids out of its range)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from django.conf import settings

from localai_site.core.refusals import Refusal

from .models import Upload

MAX_SYNC_IDS = 200
# The deepest frame the page sends is 2 (a sync's list of ids): deeper is refused before
# parsing, whose recursion a frame of brackets would otherwise exhaust.
MAX_DEPTH = 4
MAX_ID = 2**63 - 1  # the database's BigAutoField range starts at 1
# A JSON string, or an unclosed one running to the end: each match consumes, so it is linear.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# NUL cannot be stored in PostgreSQL text; a lone surrogate cannot be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class SendFrame:
    content: str
    model: str | None
    uploads: tuple[uuid.UUID, ...] = ()  # files stored beforehand (``chat:upload_new``), sent with it


@dataclass(frozen=True, slots=True)
class StopFrame:
    message_id: int | None


@dataclass(frozen=True, slots=True)
class SyncFrame:
    message_ids: list[int]


@dataclass(frozen=True, slots=True)
class RegenerateFrame:
    message_id: int


@dataclass(frozen=True, slots=True)
class EditFrame:
    message_id: int
    content: str


ClientFrame = SendFrame | StopFrame | SyncFrame | RegenerateFrame | EditFrame


def _optional_int(frame: dict, key: str) -> int | None:
    value = frame.get(key)
    if value is None:
        return None
    if not _is_id(value):
        raise Refusal("bad_frame", f"'{key}' must be a message id (a whole number).")
    return value


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _required_int(frame: dict, key: str) -> int:
    value = _optional_int(frame, key)
    if value is None:
        raise Refusal("bad_frame", f"'{frame['type']}' needs '{key}' (a message id).")
    return value


def _text(frame: dict, key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise Refusal("bad_frame", f"'{frame['type']}' needs '{key}' (text).")
    return value


def _upload_ids(frame: dict) -> tuple[uuid.UUID, ...]:
    ids = frame.get("uploads") or []
    bad = Refusal("bad_frame", f"'uploads' must be a list of at most {Upload.PER_MESSAGE} file ids.")
    if not isinstance(ids, list) or len(ids) > Upload.PER_MESSAGE or not all(isinstance(i, str) for i in ids):
        raise bad
    try:
        return tuple(uuid.UUID(i) for i in ids)
    except ValueError:
        raise bad from None


def _depth(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest, counted without parsing it."""
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _storable(value: object) -> bool:
    """Every string in ``value`` (keys included) can be stored as text."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def _json_text(raw: str | bytes | None) -> str:
    if raw is None:
        raise Refusal("bad_frame", "Frames must be JSON text.")
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > settings.CHAT_MAX_FRAME_BYTES:
        raise Refusal("too_large", f"Frames are limited to {settings.CHAT_MAX_FRAME_BYTES // 1024} KB.")
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal("bad_json", "That frame is not valid JSON (UTF-8 text).") from None


def frame_parse(raw: str | bytes | None, *, conversation_id: str) -> ClientFrame:
    text = _json_text(raw)
    if _depth(text) > MAX_DEPTH:
        raise Refusal("too_deep", f"Frames nest at most {MAX_DEPTH} levels deep.")
    try:
        frame = json.loads(text)
    except ValueError:  # integers too long to convert included
        raise Refusal("bad_json", "That frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise Refusal("bad_frame", "A frame must be a JSON object with a 'type'.")
    if not _storable(frame):
        raise Refusal("bad_text", "Text must not contain NUL characters or unpaired surrogates.")
    named = frame.get("conversation")
    if named is not None and str(named) != conversation_id:
        raise Refusal("forbidden", "This socket belongs to another conversation.")

    kind = frame.get("type")
    if kind == "send":
        content = _text(frame, "content")
        model = frame.get("model")
        if model is not None and not isinstance(model, str):
            raise Refusal("bad_frame", "'model' must be a model id (text).")
        return SendFrame(content=content, model=model or None, uploads=_upload_ids(frame))
    if kind == "stop":
        return StopFrame(message_id=_optional_int(frame, "message"))
    if kind == "sync":
        ids = frame.get("messages", [])
        if not isinstance(ids, list) or len(ids) > MAX_SYNC_IDS or not all(_is_id(i) for i in ids):
            raise Refusal("bad_frame", f"'messages' must be a list of at most {MAX_SYNC_IDS} message ids.")
        return SyncFrame(message_ids=ids)
    if kind == "regenerate":
        return RegenerateFrame(message_id=_required_int(frame, "message"))
    if kind == "edit":
        return EditFrame(message_id=_required_int(frame, "message"), content=_text(frame, "content"))
    if kind is None:
        raise Refusal("bad_frame", "A frame must have a 'type'.")
    raise Refusal("unknown_type", f"Unknown frame type {str(kind)[:40]!r}.")

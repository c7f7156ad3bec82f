"""Validation of what a browser sends over the chat socket."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

from localai_site.core.refusals import Refusal

MAX_SYNC_IDS = 200


@dataclass(frozen=True, slots=True)
class SendFrame:
    content: str
    model: str | None


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
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refusal("bad_frame", f"'{key}' must be a message id (a whole number).")
    return value


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


def frame_parse(raw: str | bytes | None, *, conversation_id: str) -> ClientFrame:
    if raw is None:
        raise Refusal("bad_frame", "Frames must be JSON text.")
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
    if size > settings.CHAT_MAX_FRAME_BYTES:
        raise Refusal("too_large", f"Frames are limited to {settings.CHAT_MAX_FRAME_BYTES // 1024} KB.")
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal("bad_json", "That frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise Refusal("bad_frame", "A frame must be a JSON object with a 'type'.")
    named = frame.get("conversation")
    if named is not None and str(named) != conversation_id:
        raise Refusal("forbidden", "This socket belongs to another conversation.")

    kind = frame.get("type")
    if kind == "send":
        content = _text(frame, "content")
        model = frame.get("model")
        if model is not None and not isinstance(model, str):
            raise Refusal("bad_frame", "'model' must be a model id (text).")
        return SendFrame(content=content, model=model or None)
    if kind == "stop":
        return StopFrame(message_id=_optional_int(frame, "message"))
    if kind == "sync":
        ids = frame.get("messages", [])
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_SYNC_IDS
            or any(isinstance(i, bool) or not isinstance(i, int) for i in ids)
        ):
            raise Refusal("bad_frame", f"'messages' must be a list of at most {MAX_SYNC_IDS} message ids.")
        return SyncFrame(message_ids=ids)
    if kind == "regenerate":
        return RegenerateFrame(message_id=_required_int(frame, "message"))
    if kind == "edit":
        return EditFrame(message_id=_required_int(frame, "message"), content=_text(frame, "content"))
    if kind is None:
        raise Refusal("bad_frame", "A frame must have a 'type'.")
    raise Refusal("unknown_type", f"Unknown frame type {str(kind)[:40]!r}.")

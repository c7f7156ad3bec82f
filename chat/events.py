"""The frames the server sends over the chat socket (see static/chat/chat.js).

Offsets and lengths count UTF-16 code units, the way JavaScript strings do, so the
browser can place a delta with ``text.length`` and emoji never shift the text. Error
frames are the base consumer's (``LiveConsumer.refuse`` in ``localai_site.core.sockets``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.template.loader import render_to_string

from .display import message_display
from .models import Message


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def message_payload(message: Message) -> dict[str, Any]:
    """A message's data, how it is shown, and its bubble as the page renders it (a few of
    these per reply; the text in between travels as deltas)."""
    display = message_display(message)
    return {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": message.error,
        "model": message.model,
        "provider": message.provider,
        "completion_tokens": message.completion_tokens,
        "ttft_ms": message.ttft_ms,
        "tokens_per_second": message.tokens_per_second,
        "omitted_turns": message.omitted_turns,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "display": asdict(display),
        # Escaped by the template like the page; the script inserts it for a message it lacks.
        "bubble": render_to_string("chat/message.html", {"message": message, "display": display}),
    }


def message_event(message: Message) -> dict[str, Any]:
    return {"type": "message", "message": message_payload(message)}


def removed_event(message_ids: list[int]) -> dict[str, Any]:
    """Messages replaced by a regenerated reply or an edit."""
    return {"type": "removed", "ids": message_ids}


def delta_event(*, message_id: int, offset: int, text: str) -> dict[str, Any]:
    return {"type": "delta", "id": message_id, "offset": offset, "text": text}


def sync_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "sync", "messages": messages}

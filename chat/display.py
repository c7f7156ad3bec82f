"""How a message is shown: the words under a reply and the HTML of a finished one.

The one owner of those decisions. ``templates/chat/message.html`` renders from it and the
socket's message payload carries it (``chat/events.py``); ``static/chat/chat.js`` only puts
its texts in place. Not the frames themselves (``events``) nor the live text (``live``).
"""

from __future__ import annotations

import html as html_entities
from dataclasses import dataclass

from django.utils.html import strip_tags
from django.utils.safestring import SafeString, mark_safe

from localai_site.core.markdown import markdown_to_html

from .models import DocumentText, Message, MessageStatus, Provider, Role, Upload

_STATUS_WORDS = {
    MessageStatus.QUEUED: "Waiting for the model…",
    MessageStatus.STREAMING: "Writing…",
    MessageStatus.STOPPED: "Stopped",
}
_ENDINGS: dict[str, str] = {
    MessageStatus.DONE: "Reply finished",
    MessageStatus.STOPPED: "Reply stopped",
    MessageStatus.FAILED: "Reply failed",
}
ANNOUNCED_WORDS = 25  # enough to tell which reply it is; the whole text is a keystroke away


@dataclass(frozen=True)
class MessageDisplay:
    status: str
    model: str
    stats: str
    context: str
    # Sanitised HTML of a finished reply; None while it streams and for the person's own words.
    html: SafeString | None
    # What a screen reader says once when a reply ends (the chat page's live region); "" otherwise.
    announcement: str


def recipient_label(provider: str) -> str:
    """Who received the words, as a person reads it."""
    return "this instance" if provider == Provider.LOCAL else provider


def _model_name(model_id: str) -> str:
    """``local:smollm2-135m-instruct`` → ``smollm2-135m-instruct``; cloud ids keep the model part."""
    return model_id.split(":", 1)[-1].split("/", 1)[-1]


def _status_words(message: Message) -> str:
    if message.status == MessageStatus.FAILED:
        return message.error or "Failed"
    return _STATUS_WORDS.get(message.status, "")


def _stats(message: Message) -> str:
    parts = []
    if message.completion_tokens:
        parts.append(f"{message.completion_tokens} tokens")
    if message.tokens_per_second:
        parts.append(f"{message.tokens_per_second} tok/s")
    if message.ttft_ms is not None:
        parts.append(f"first token {message.ttft_ms} ms")
    return " · ".join(parts)


def _context(message: Message) -> str:
    n = message.omitted_turns
    notes = [f"{n} earlier message{'' if n == 1 else 's'} left out to fit the model's context"] if n else []
    if message.pages_used:
        notes.append(f"the model read only {message.pages_used}, the most relevant to the question")
    return "; ".join(notes)


def upload_reading(upload: Upload) -> str:
    """How reading a PDF's text went, as its card says it; empty when there is nothing to say."""
    n, pages = upload.ocr_pages, upload.page_count or 0
    if upload.text_status == DocumentText.READ and n:
        return (
            "scanned, read by OCR" if n == pages else f"{n} scanned page{'' if n == 1 else 's'} read by OCR"
        )
    if upload.text_status == DocumentText.READ and (unread := upload.unread_scans):
        return f"{unread} scanned page{'' if unread == 1 else 's'} not read: OCR is not installed here"
    return _READING_WORDS.get(upload.text_status, "")


def upload_recipients(upload: Upload) -> str:
    """Who received a file, as Settings → Privacy lists it: "this instance", or the providers;
    empty when no model has had it yet."""
    providers = dict.fromkeys(delivery.provider for delivery in upload.deliveries.all())
    return ", ".join(recipient_label(provider) for provider in providers)


_READING_WORDS: dict[str, str] = {
    DocumentText.NO_TEXT: "no text",
    DocumentText.NO_OCR: "scanned, no text: OCR is not installed here",
    DocumentText.FAILED: "could not be read",
}


def _announcement(message: Message, html: str | None) -> str:
    """Said once when a reply ends: how it ended, then its first words as read (not its Markdown)."""
    if message.role != Role.ASSISTANT or message.is_active:
        return ""
    words = html_entities.unescape(strip_tags(html)).split() if html else []
    first_words = " ".join(words[:ANNOUNCED_WORDS]) + ("…" if len(words) > ANNOUNCED_WORDS else "")
    ending = _ENDINGS[message.status]
    if message.status == MessageStatus.FAILED and message.error:
        ending = f"{ending} ({message.error})"
    return f"{ending}: {first_words}" if first_words else ending


def message_display(message: Message) -> MessageDisplay:
    finished_reply = message.role == Role.ASSISTANT and not message.is_active and message.content
    html = mark_safe(markdown_to_html(message.content)) if finished_reply else None  # noqa: S308 - sanitised by nh3
    return MessageDisplay(
        status=_status_words(message),
        model=f"{_model_name(message.model)} · {recipient_label(message.provider)}",
        stats=_stats(message),
        context=_context(message),
        html=html,
        announcement=_announcement(message, html),
    )

"""What a reply's model reads: the persona's system prompt, then as much of the
conversation before the reply, with the files sent in it, as fits the model's context window."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Prefetch, Q

from chat.models import DocumentText, Message, MessageStatus, Role, Upload, UploadPage
from chat.providers import ChatProvider, ChatTurn

# What a chat template adds around each message (role markers, separators), in tokens.
TURN_OVERHEAD_TOKENS = 8
# What an image costs a cloud model, about: OpenAI counts 765 tokens for a 1024 px square
# at high detail and 1105 for the 2048 px uploads are scaled to; others charge alike.
IMAGE_TOKENS = 1105
COUNT_BATCH = 32  # messages whose tokens are counted in one call
# Said in place of a document's words when they do not fit, so that the model can say so.
TOO_LONG = "too long for this model's context, so its text is left out; say so if asked about it"


@dataclass(frozen=True)
class Prompt:
    turns: tuple[ChatTurn, ...]
    omitted: int  # older turns of the history left out to fit


def _data_url(upload: Upload) -> str:
    """The image itself, as the provider receives it: never a URL of ours or a storage key."""
    with upload.file.open("rb") as stored:
        return f"data:{upload.content_type};base64,{base64.b64encode(stored.read()).decode('ascii')}"


def _document_name(upload: Upload) -> str:
    if upload.content_type == "text/plain":
        return f"Attached text file “{upload.original_name}”"
    pages = f"{upload.page_count} page{'' if upload.page_count == 1 else 's'}"
    return f"Attached PDF “{upload.original_name}”, {pages}"


def _document(upload: Upload) -> str:
    """A document's words as the model reads them, or what stands in their way."""
    if upload.content_type == "text/plain":
        with upload.file.open("rb") as stored:
            return f"[{_document_name(upload)}]\n{stored.read().decode('utf-8-sig')}"
    if upload.text_status == DocumentText.READ:
        pages = "\n\n".join(
            f"--- Page {p.number} ---\n{p.text.strip()}" for p in upload.pages.all() if p.text.strip()
        )
        return f"[{_document_name(upload)}]\n{pages}"
    return f"[{_document_name(upload)}: {_UNREAD.get(upload.text_status, 'its text was never read')}.]"


_UNREAD: dict[str, str] = {
    DocumentText.PENDING: "its text is still being read, so it is not included yet",
    DocumentText.NO_TEXT: "it has no text layer (a scan?), so it cannot be read here",
    DocumentText.FAILED: "its text could not be read",
}


@dataclass(frozen=True)
class _Turn:
    turn: ChatTurn  # with its documents' words
    brief: ChatTurn | None = None  # the same with each document only named, when it has any


def _history(reply: Message) -> list[_Turn]:
    pages = Prefetch("pages", queryset=UploadPage.objects.order_by("number"))
    attachments = Upload.objects.order_by("created_at").prefetch_related(pages)
    earlier = (
        Message.objects.filter(conversation_id=reply.conversation_id, id__lt=reply.pk)
        .filter(Q(role=Role.USER) | Q(status__in=[MessageStatus.DONE, MessageStatus.STOPPED]))
        .exclude(content="")
        .order_by("id")
        .only("role", "content")
        .prefetch_related(Prefetch("attachments", queryset=attachments))
    )
    turns = []
    for message in earlier:
        files = list(message.attachments.all())
        images = tuple(_data_url(upload) for upload in files if upload.is_image)
        documents = [upload for upload in files if not upload.is_image]
        if not documents:
            turns.append(_Turn(ChatTurn(role=message.role, content=message.content, images=images)))
            continue
        whole = "\n\n".join([message.content, *map(_document, documents)])
        named = "\n\n".join([message.content, *(f"[{_document_name(d)}: {TOO_LONG}]" for d in documents)])
        turns.append(
            _Turn(
                ChatTurn(role=message.role, content=whole, images=images),
                ChatTurn(role=message.role, content=named, images=images),
            )
        )
    return turns


def history_of(*, reply: Message) -> list[ChatTurn]:
    """The turns before ``reply``, oldest first: the person's messages with their files (images
    as data URLs, the words of PDFs and text files after the message) and the replies that
    finished or were stopped (failed ones and empty ones are not history). Only a model that
    sees images gets a conversation with images (``choice.images_check``)."""
    return [entry.turn for entry in _history(reply)]


def _cost(turn: ChatTurn, tokens: int) -> int:
    return tokens + TURN_OVERHEAD_TOKENS + IMAGE_TOKENS * len(turn.images)


def prompt_build(*, reply: Message, provider: ChatProvider, context_length: int, max_tokens: int) -> Prompt:
    """The prompt for ``reply``, leaving ``max_tokens`` of ``context_length`` for the reply.

    Tokens are counted newest first, a few dozen messages per call: a local model counts
    in its runner process. Documents too long for what is left go by name, never cut.
    """
    persona = reply.conversation.persona
    system = [ChatTurn(role=Role.SYSTEM, content=persona.system_prompt)] if persona else []
    history = _history(reply)
    budget = context_length - max_tokens - sum(provider.token_counts([t.content for t in system]))
    kept: list[ChatTurn] = []
    for entry, tokens in _counted_newest_first(history, provider):
        turn, cost = entry.turn, _cost(entry.turn, tokens)
        if cost > budget and not kept and entry.brief is not None:
            turn = entry.brief
            cost = _cost(turn, provider.token_counts([turn.content])[0])
        if kept and cost > budget:
            break  # the newest message always goes, even alone; the model says if it is too long
        kept.append(turn)
        budget -= cost
    return Prompt(turns=(*system, *kept[::-1]), omitted=len(history) - len(kept))


def _counted_newest_first(history: list[_Turn], provider: ChatProvider) -> Iterator[tuple[_Turn, int]]:
    """Each turn with its tokens, newest first, counted ``COUNT_BATCH`` at a time: only as
    far back as the caller reads."""
    newest_first = history[::-1]
    for start in range(0, len(newest_first), COUNT_BATCH):
        batch = newest_first[start : start + COUNT_BATCH]
        yield from zip(batch, provider.token_counts([entry.turn.content for entry in batch]), strict=True)

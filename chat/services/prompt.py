"""What a reply's model reads: the persona's system prompt, then as much of the
conversation before the reply, with the files sent in it, as fits the model's context window."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Prefetch, Q

from chat.models import DocumentText, Message, MessageStatus, Role, Upload, UploadPage
from chat.page_ranking import upload_pages_ranked
from chat.providers import ChatProvider, ChatTurn

# What a chat template adds around each message (role markers, separators), in tokens.
TURN_OVERHEAD_TOKENS = 8
# What an image costs a cloud model, about: OpenAI counts 765 tokens for a 1024 px square
# at high detail and 1105 for the 2048 px uploads are scaled to; others charge alike.
IMAGE_TOKENS = 1105
COUNT_BATCH = 32  # messages whose tokens are counted in one call
# Said in place of a document's words when they do not fit, so that the model can say so.
TOO_LONG = "too long for this model's context, so its text is left out; say so if asked about it"
# Said before the pages of a document that were chosen for the question (``{pages}``).
SOME_PAGES = (
    "too long for this model's context, so only {pages}, the most relevant to the question, "
    "follow; say so if asked about the rest"
)
SMALLEST_PAGE_TOKENS = 32  # with less room left, no further page is tried


@dataclass(frozen=True)
class Prompt:
    turns: tuple[ChatTurn, ...]
    omitted: int  # older turns of the history left out to fit
    pages_used: str = ""  # of documents too long to go whole: "pages 3, 7–9 of report.pdf"
    upload_ids: tuple[uuid.UUID, ...] = ()  # the files whose bytes or words are in it


def _data_url(upload: Upload) -> str:
    """The image itself, as the provider receives it: never a URL of ours or a storage key."""
    with upload.file.open("rb") as stored:
        return f"data:{upload.content_type};base64,{base64.b64encode(stored.read()).decode('ascii')}"


def _document_name(upload: Upload) -> str:
    if upload.content_type == "text/plain":
        return f"Attached text file “{upload.original_name}”"
    pages = f"{upload.page_count} page{'' if upload.page_count == 1 else 's'}"
    return f"Attached PDF “{upload.original_name}”, {pages}"


def _page(page: UploadPage) -> str:
    scanned = " (scanned, read by OCR)" if page.ocr else ""
    return f"--- Page {page.number}{scanned} ---\n{page.text.strip()}"


def page_ranges(numbers: list[int]) -> str:
    """How pages are named: "page 4", or "pages 3, 7–9" for pages 3, 7, 8 and 9 (in order)."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    listed = ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}–{run[-1]}" for run in runs)
    return f"page{'s' if len(numbers) > 1 else ''} {listed}"


def _document(upload: Upload) -> str:
    """A document's words as the model reads them, or what stands in their way."""
    if upload.content_type == "text/plain":
        with upload.file.open("rb") as stored:
            return f"[{_document_name(upload)}]\n{stored.read().decode('utf-8-sig')}"
    if upload.text_status == DocumentText.READ:
        pages = "\n\n".join(_page(p) for p in upload.pages.all() if p.text.strip())
        return f"[{_document_name(upload)}{_unread_scans(upload)}]\n{pages}"
    return f"[{_document_name(upload)}: {_UNREAD.get(upload.text_status, 'its text was never read')}.]"


def _unread_scans(upload: Upload) -> str:
    if not (unread := upload.unread_scans):
        return ""
    pages = f"{unread} scanned page{'' if unread == 1 else 's'}"
    return f"; {pages} in it could not be read (OCR is not installed here)"


_UNREAD: dict[str, str] = {
    DocumentText.PENDING: "its text is still being read, so it is not included yet",
    DocumentText.NO_TEXT: "it has no text layer (a scan?), so it cannot be read here",
    DocumentText.NO_OCR: "it is scanned, without a text layer, and OCR is not installed here to read it",
    DocumentText.FAILED: "its text could not be read",
}


@dataclass(frozen=True)
class _Turn:
    turn: ChatTurn  # with its documents' words
    brief: ChatTurn | None = None  # the same with each document only named, when it has any
    text: str = ""  # the message alone
    documents: tuple[Upload, ...] = ()
    upload_ids: tuple[uuid.UUID, ...] = ()  # of the files that go with it (not kept recordings)

    def with_pages(self, chosen: dict[uuid.UUID, list[UploadPage]]) -> ChatTurn:
        """The message with only the ``chosen`` pages of its PDFs, in page order, each such
        PDF named with the pages that follow; the other documents only named."""
        parts = [self.text]
        for document in self.documents:
            pages = sorted(chosen.get(document.pk, []), key=lambda page: page.number)
            if not pages:
                parts.append(f"[{_document_name(document)}: {TOO_LONG}]")
                continue
            notice = SOME_PAGES.format(pages=page_ranges([page.number for page in pages]))
            parts.append(f"[{_document_name(document)}: {notice}]\n" + "\n\n".join(map(_page, pages)))
        return ChatTurn(role=self.turn.role, content="\n\n".join(parts), images=self.turn.images)


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
        documents = [upload for upload in files if not upload.is_image and not upload.is_audio]
        sent = tuple(upload.pk for upload in files if not upload.is_audio)
        if not documents:
            turns.append(
                _Turn(ChatTurn(role=message.role, content=message.content, images=images), upload_ids=sent)
            )
            continue
        whole = "\n\n".join([message.content, *map(_document, documents)])
        named = "\n\n".join([message.content, *(f"[{_document_name(d)}: {TOO_LONG}]" for d in documents)])
        turns.append(
            _Turn(
                ChatTurn(role=message.role, content=whole, images=images),
                ChatTurn(role=message.role, content=named, images=images),
                text=message.content,
                documents=tuple(documents),
                upload_ids=sent,
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
    in its runner process. A message whose PDFs are too long for what is left takes the
    pages most relevant to the newest question (``_relevant_pages``); documents that still
    do not fit go by name, never cut.
    """
    persona = reply.conversation.persona
    system = [ChatTurn(role=Role.SYSTEM, content=persona.system_prompt)] if persona else []
    history = _history(reply)
    question = next((entry.text for entry in reversed(history) if entry.turn.role == Role.USER), "")
    budget = context_length - max_tokens - sum(provider.token_counts([t.content for t in system]))
    kept: list[ChatTurn] = []
    pages_used: list[str] = []
    sent: list[uuid.UUID] = []
    for entry, tokens in _counted_newest_first(history, provider):
        turn, cost = entry.turn, _cost(entry.turn, tokens)
        if cost > budget and entry.documents:
            relevant = _relevant_pages(entry, question, provider, budget)
            if relevant is not None:
                turn, cost, used = relevant
                pages_used.append(used)
            elif not kept and entry.brief is not None:
                turn = entry.brief
                cost = _cost(turn, provider.token_counts([turn.content])[0])
        if kept and cost > budget:
            break  # the newest message always goes, even alone; the model says if it is too long
        kept.append(turn)
        sent.extend(entry.upload_ids)  # a file only named still reached the model by its name
        budget -= cost
    return Prompt(
        turns=(*system, *kept[::-1]),
        omitted=len(history) - len(kept),
        pages_used="; ".join(pages_used[::-1]),
        upload_ids=tuple(sent),
    )


def _relevant_pages(
    entry: _Turn, question: str, provider: ChatProvider, budget: int
) -> tuple[ChatTurn, int, str] | None:
    """``entry`` with, of its read PDFs, the pages ranked most relevant to ``question``
    (``page_ranking``) that fit in ``budget`` tokens, best first; its cost, and which pages
    of which files it holds. None when no page both matches and fits."""
    readable = [d for d in entry.documents if d.text_status == DocumentText.READ]  # PDFs read
    pages = {(page.upload_id, page.number): page for d in readable for page in d.pages.all()}
    ranked = [
        pages[key]
        for key in upload_pages_ranked(upload_ids=[d.pk for d in readable], question=question)
        if key in pages and pages[key].text.strip()
    ]
    if not ranked:
        return None
    skeleton = entry.with_pages({})  # every document named, no page yet
    room = budget - _cost(skeleton, provider.token_counts([skeleton.content])[0])
    chosen: list[UploadPage] = []
    for start in range(0, len(ranked), COUNT_BATCH):
        batch = ranked[start : start + COUNT_BATCH]
        for page, tokens in zip(batch, provider.token_counts([_page(page) for page in batch]), strict=True):
            if tokens + 2 <= room:  # and the blank line before it
                chosen.append(page)
                room -= tokens + 2
        if room < SMALLEST_PAGE_TOKENS:
            break
    while chosen:
        # Each PDF's notice naming its pages costs a few tokens more than the skeleton's.
        by_upload: dict[uuid.UUID, list[UploadPage]] = {}
        for page in chosen:
            by_upload.setdefault(page.upload_id, []).append(page)
        turn = entry.with_pages(by_upload)
        cost = _cost(turn, provider.token_counts([turn.content])[0])
        if cost <= budget:
            used = "; ".join(
                f"{page_ranges(sorted(p.number for p in by_upload[d.pk]))} of {d.original_name}"
                for d in readable
                if d.pk in by_upload
            )
            return turn, cost, used
        chosen.pop()  # the least relevant
    return None


def _counted_newest_first(history: list[_Turn], provider: ChatProvider) -> Iterator[tuple[_Turn, int]]:
    """Each turn with its tokens, newest first, counted ``COUNT_BATCH`` at a time: only as
    far back as the caller reads."""
    newest_first = history[::-1]
    for start in range(0, len(newest_first), COUNT_BATCH):
        batch = newest_first[start : start + COUNT_BATCH]
        yield from zip(batch, provider.token_counts([entry.turn.content for entry in batch]), strict=True)

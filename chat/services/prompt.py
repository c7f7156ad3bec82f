"""What a reply's model reads: the persona's system prompt, then as much of the
conversation before the reply as fits the model's context window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Q

from chat.models import Message, MessageStatus, Role
from chat.providers import ChatProvider, ChatTurn

# What a chat template adds around each message (role markers, separators), in tokens.
TURN_OVERHEAD_TOKENS = 8
COUNT_BATCH = 32  # messages whose tokens are counted in one call


@dataclass(frozen=True)
class Prompt:
    turns: tuple[ChatTurn, ...]
    omitted: int  # older turns of the history left out to fit


def history_of(*, reply: Message) -> list[ChatTurn]:
    """The turns before ``reply``, oldest first: the person's messages and the replies that
    finished or were stopped (failed ones and empty ones are not history)."""
    earlier = (
        Message.objects.filter(conversation_id=reply.conversation_id, id__lt=reply.pk)
        .filter(Q(role=Role.USER) | Q(status__in=[MessageStatus.DONE, MessageStatus.STOPPED]))
        .exclude(content="")
        .order_by("id")
        .values_list("role", "content")
    )
    return [ChatTurn(role=role, content=content) for role, content in earlier]


def prompt_build(*, reply: Message, provider: ChatProvider, context_length: int, max_tokens: int) -> Prompt:
    """The prompt for ``reply``, leaving ``max_tokens`` of ``context_length`` for the reply.

    Tokens are counted newest first, a few dozen messages per call: a local model counts
    in its runner process.
    """
    persona = reply.conversation.persona
    system = [ChatTurn(role=Role.SYSTEM, content=persona.system_prompt)] if persona else []
    history = history_of(reply=reply)
    budget = context_length - max_tokens - sum(provider.token_counts([t.content for t in system]))
    kept: list[ChatTurn] = []
    for turn, tokens in _counted_newest_first(history, provider):
        cost = tokens + TURN_OVERHEAD_TOKENS
        if kept and cost > budget:
            break  # the newest message always goes, even alone; the model says if it is too long
        kept.append(turn)
        budget -= cost
    return Prompt(turns=(*system, *kept[::-1]), omitted=len(history) - len(kept))


def _counted_newest_first(history: list[ChatTurn], provider: ChatProvider) -> Iterator[tuple[ChatTurn, int]]:
    """Each turn with its tokens, newest first, counted ``COUNT_BATCH`` at a time: only as
    far back as the caller reads."""
    newest_first = history[::-1]
    for start in range(0, len(newest_first), COUNT_BATCH):
        batch = newest_first[start : start + COUNT_BATCH]
        yield from zip(batch, provider.token_counts([t.content for t in batch]), strict=True)

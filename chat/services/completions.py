"""Chats asked for through the OpenAI-compatible API (``chat.api``): the request's messages
become a conversation of the key's owner, answered the way one sent in the browser is, under
the same lines (restriction, the privacy line, quotas). Reading the reply is the API's."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from accounts.analytics import usage_record
from accounts.models import ApiKey, UsageEventName
from chat.models import Conversation, Message, MessageStatus, Role
from chat.providers import ChatTurn
from localai_site.core.refusals import Refusal

from .choice import model_choose, restriction_check
from .replies import conversation_lock_idle, conversation_title_from, message_content_check, reply_start

MAX_TURNS = 500  # messages in one request


@transaction.atomic
def completion_start(*, key: ApiKey, model_id: str, turns: Sequence[ChatTurn], sampling: dict) -> Message:
    """A new conversation holding ``turns``, with the reply to its last one queued."""
    if not key.can_chat:
        raise Refusal("insufficient_scope", "This API key may only list models (it is read-only).")
    owner = key.user
    restriction_check(user=owner)
    choice = model_choose(user=owner, model_id=model_id)
    if key.local_only and not choice.is_local:
        raise Refusal(
            "local_only_key",
            f"This API key is for local models only, so it cannot use {choice.label} "
            f"({choice.provider_name}).",
        )
    if not turns or turns[-1].role != Role.USER:
        raise Refusal("no_question", "The last message must be the user's.")
    if len(turns) > MAX_TURNS:
        raise Refusal("too_many_messages", f"A request may hold at most {MAX_TURNS} messages.")
    texts = [message_content_check(t.content) if t.role == Role.USER else t.content for t in turns]
    conversation = Conversation.objects.create(
        owner=owner, model=choice.model_id, provider=choice.provider, title=conversation_title_from(texts[-1])
    )
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=turn.role,
            content=text,
            status=MessageStatus.DONE,
            model=choice.model_id,
            provider=choice.provider,
        )
        for turn, text in zip(turns, texts, strict=True)
    )
    usage_record(
        user=owner, name=UsageEventName.CONVERSATION_CREATED, model=choice.model_id, provider=choice.provider
    )
    usage_record(
        user=owner, name=UsageEventName.MESSAGE_SENT, model=choice.model_id, provider=choice.provider
    )
    return reply_start(conversation_lock_idle(conversation), choice, sampling=sampling)

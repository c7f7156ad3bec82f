"""Conversations as a whole: starting one, renaming, pinning, and deleting one or a
person's history with the files given in it."""

from __future__ import annotations

from django.db import transaction

from accounts.analytics import usage_record
from accounts.models import UsageEventName, User
from chat.models import ACTIVE_STATUSES, Conversation, Provider, Upload
from localai_site.core.files import files_delete_after_commit
from localai_site.core.privacy import admin_history_scrub
from localai_site.core.refusals import Refusal
from models_hub.workers import prompt_caches_forget

from .choice import model_choose
from .personas import persona_choose
from .replies import reply_stop

# What admin history says of a deleted conversation: its title is the start of what its owner
# wrote, and the history outlives it (an admin deleting it is recorded before it goes).
DELETED = "deleted conversation"


def conversation_create(
    *, owner: User, model_id: str | None = None, persona_id: int | None = None, remember_persona: bool = False
) -> Conversation:
    """A new conversation; ``remember_persona`` makes its persona the person's default."""
    persona = persona_choose(user=owner, persona_id=persona_id)
    wanted = model_id or (persona.default_model if persona else "") or owner.default_model
    try:
        choice = model_choose(user=owner, model_id=wanted)
    except Refusal:
        if model_id:
            raise
        choice = model_choose(user=owner, model_id=None)  # a remembered default that is gone
    if remember_persona and owner.default_persona != persona:
        owner.default_persona = persona
        owner.save(update_fields=["default_persona"])
    conversation = Conversation.objects.create(
        owner=owner, model=choice.model_id, provider=choice.provider, persona=persona
    )
    usage_record(
        user=owner, name=UsageEventName.CONVERSATION_CREATED, model=choice.model_id, provider=choice.provider
    )
    return conversation


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(str(title).split())
    if not title:
        raise Refusal("empty", "A title cannot be empty.")
    conversation.title = title[:200]
    conversation.save(update_fields=["title"])
    return conversation


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    conversation.pinned = pinned
    conversation.save(update_fields=["pinned"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with its messages and the files given in it."""
    reply_stop(conversation=conversation)
    with transaction.atomic():
        files_delete_after_commit(upload.file for upload in conversation.uploads.only("file"))
        admin_history_scrub(rows=Conversation.objects.filter(pk=conversation.pk), object_repr=DELETED)
        prompts_forget_after_commit([conversation])
        conversation.delete()


def conversations_clear(*, user: User, local: bool) -> int:
    """Delete all of a person's conversations with local models (or with cloud ones)."""
    conversations = Conversation.objects.filter(owner=user)
    conversations = (
        conversations.filter(provider=Provider.LOCAL)
        if local
        else conversations.exclude(provider=Provider.LOCAL)
    )
    for conversation in conversations.filter(messages__status__in=ACTIVE_STATUSES).distinct():
        reply_stop(conversation=conversation)
    with transaction.atomic():
        files_delete_after_commit(
            upload.file for upload in Upload.objects.filter(conversation__in=conversations).only("file")
        )
        admin_history_scrub(rows=conversations, object_repr=DELETED)
        prompts_forget_after_commit(conversations.only("id"))
        return conversations.delete()[1].get(Conversation._meta.label, 0)


def prompts_forget_after_commit(conversations) -> None:
    """Once the deletion of ``conversations`` is committed, the model runners drop what they
    keep of them: their prompts, the people's words as the model read them."""
    cache_keys = [conversation.prompt_cache_key for conversation in conversations]
    transaction.on_commit(lambda: prompt_caches_forget(cache_keys))

"""A conversation's prompt kept by the model runner between turns, and dropped with the
conversation. Embedded mode, as ``localai serve`` runs it: the real runner and bundled model."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Conversation, Message
from localai_site.core.privacy import user_erase
from models_hub.supervisor import supervisor
from tests.chat.test_runtime_faults import settled

pytestmark = pytest.mark.django_db(transaction=True)

OPENING = "Tell me about apples. " + "I like apples a lot. " * 20


@pytest.fixture(autouse=True)
def own_runner(settings):
    settings.CHAT_MAX_TOKENS = 8
    supervisor.stop()
    yield
    supervisor.stop()


def answered(conversation: Conversation, content: str) -> Message:
    _, reply = services.message_send(conversation=conversation, content=content)
    return settled(reply)


def test_the_next_turn_reuses_the_conversation_after_someone_elses_used_the_model(
    conversation, make_conversation, make_user
):
    first = answered(conversation, OPENING)
    answered(make_conversation(make_user("bob@example.com")), "Tell me about boats.")
    second = answered(conversation, "Say more.")
    assert second.cached_tokens >= first.prompt_tokens and second.prompt_tokens > first.prompt_tokens


def prompts_held() -> int:
    """Conversations whose prompt the runner holds (asked after whatever was sent before)."""
    return sum(model["prompts_held"] for model in supervisor.call("summary"))


def test_deleting_the_conversation_drops_what_the_runner_kept_of_it(conversation, make_conversation, user):
    answered(conversation, OPENING)
    other = make_conversation(user)
    answered(other, "Tell me about boats.")
    assert prompts_held() == 2  # one kept aside, the other in the context
    services.conversation_delete(conversation=conversation)
    assert prompts_held() == 1
    services.conversation_delete(conversation=other)
    assert prompts_held() == 0


def test_clearing_the_history_or_erasing_the_person_drops_it_too(make_conversation, user):
    answered(make_conversation(user), OPENING)
    answered(make_conversation(user), "Tell me about boats.")
    services.conversations_clear(user=user, local=True)
    assert prompts_held() == 0

    answered(make_conversation(user), OPENING)
    user_erase(user=user)
    assert prompts_held() == 0

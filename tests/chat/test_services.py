import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import live, selectors, services
from chat.models import Message, MessageStatus, Role
from chat.services.replies import TITLE_CHARS
from localai_site.core.refusals import Refusal
from models_hub import runtime
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _send(conversation, content="Say hello.", **kwargs):
    return services.message_send(conversation=conversation, content=content, **kwargs)


def test_send_saves_the_message_and_a_queued_reply_and_starts_it_after_commit(
    conversation, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        user_message, reply = _send(conversation, "  What is a lighthouse?  ")
    assert len(callbacks) == 1
    assert (user_message.role, user_message.content) == (Role.USER, "What is a lighthouse?")
    assert (reply.role, reply.status, reply.content) == (Role.ASSISTANT, MessageStatus.QUEUED, "")
    assert reply.provider == "local" and reply.model == conversation.model
    conversation.refresh_from_db()
    assert conversation.title == "What is a lighthouse?"


def test_long_first_message_makes_a_short_title(conversation):
    _send(conversation, "word " * 100)
    conversation.refresh_from_db()
    assert len(conversation.title) <= TITLE_CHARS and conversation.title.endswith("…")


@pytest.mark.parametrize("content", ["", "   \n ", None, 42])
def test_empty_or_non_text_messages_are_refused(conversation, content):
    with pytest.raises(Refusal) as error:
        _send(conversation, content)
    assert error.value.code == "empty"
    assert not Message.objects.exists()


def test_messages_over_the_size_limit_are_refused_and_nothing_is_saved(conversation, settings):
    with pytest.raises(Refusal) as error:
        _send(conversation, "x" * (settings.CHAT_MAX_MESSAGE_BYTES + 1))
    assert error.value.code == "too_long"
    assert "32 KB" in error.value.message
    assert not Message.objects.exists()


def test_a_model_that_does_not_exist_is_refused(conversation):
    with pytest.raises(Refusal) as error:
        _send(conversation, model_id="local:no-such-model")
    assert error.value.code == "unknown_model"
    assert not Message.objects.exists()


def test_a_second_message_waits_for_the_reply_being_written(conversation):
    _send(conversation)
    with pytest.raises(Refusal) as error:
        _send(conversation, "And another thing")
    assert error.value.code == "busy"
    assert conversation.messages.count() == 2


def test_one_person_has_at_most_the_allowed_replies_queued_across_conversations(
    user, make_conversation, other_user, settings
):
    settings.CHAT_MAX_ACTIVE_REPLIES = 2
    first, second, third = (make_conversation(user) for _ in range(3))
    _send(first)
    _send(second)
    with pytest.raises(Refusal) as error:
        _send(third)
    assert error.value.code == "too_many_replies" and "(2)" in error.value.message
    assert not third.messages.exists()
    _send(make_conversation(other_user))  # the cap is per person
    services.reply_stop(conversation=first)
    _send(third)


def test_the_local_model_writes_the_reply_with_counts_and_timings(conversation, local_model, short_replies):
    _, reply = _send(conversation, "Name three colours.")
    services.reply_generate(message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    assert reply.content.strip()
    assert 0 < reply.completion_tokens <= short_replies.CHAT_MAX_TOKENS
    assert reply.prompt_tokens > 5
    assert reply.ttft_ms is not None and reply.duration_ms >= reply.ttft_ms
    assert reply.finished_at is not None and reply.tokens_per_second > 0
    # The count is the model's own: it matches the text re-tokenised, give or take a merge.
    [retokenised] = runtime.token_counts(model=local_model, texts=[reply.content])
    assert abs(retokenised - reply.completion_tokens) <= 2


def test_history_is_sent_to_the_model_in_order_without_failed_replies(conversation, short_replies):
    first_user, first_reply = _send(conversation, "My name is Ann.")
    Message.objects.filter(pk=first_reply.pk).update(status=MessageStatus.FAILED, content="partial")
    second_user, second_reply = _send(conversation, "What is my name?")
    turns = services.history_of(reply=second_reply)
    assert [(t.role, t.content) for t in turns] == [("user", "My name is Ann."), ("user", "What is my name?")]


def test_stop_before_any_worker_starts_ends_the_reply_at_once(conversation):
    _, reply = _send(conversation)
    assert services.reply_stop(conversation=conversation) == [reply.pk]
    reply.refresh_from_db()
    assert reply.status == MessageStatus.STOPPED
    services.reply_generate(message_id=reply.pk)  # a worker arriving late does nothing
    reply.refresh_from_db()
    assert reply.status == MessageStatus.STOPPED and reply.content == ""


@pytest.mark.django_db(transaction=True)
def test_stop_while_streaming_keeps_the_text_so_far(conversation, settings):
    settings.CHAT_MAX_TOKENS = 400
    # The rows message_send makes, without handing the reply to a pool or a broker: this
    # test is the worker (in both modes), and no other generator may race it.
    Message.objects.create(
        conversation=conversation, role=Role.USER, content="Write a very long story about a dragon."
    )
    reply = Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, status=MessageStatus.QUEUED, model=conversation.model
    )
    worker = threading.Thread(target=services.reply_generate, kwargs={"message_id": reply.pk})
    worker.start()
    wait_until(lambda: live.live_texts_get([reply.pk]), timeout=60, what="the first words", every=0.02)
    services.reply_stop(conversation=conversation)
    worker.join(timeout=60)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.STOPPED
    assert reply.content.strip()
    assert reply.completion_tokens < 400
    assert live.live_texts_get([reply.pk]) == {}  # nothing left behind in the shared cache


def test_a_reply_whose_worker_went_silent_is_marked_failed_keeping_its_text(conversation, settings):
    _, reply = _send(conversation)
    long_ago = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER_S + 5)
    Message.objects.filter(pk=reply.pk).update(
        status=MessageStatus.STREAMING, content="Once upon a", heartbeat_at=long_ago
    )
    assert services.replies_fail_stale(conversation=conversation) == 1
    reply.refresh_from_db()
    assert reply.status == MessageStatus.FAILED
    assert reply.content == "Once upon a"
    assert "worker stopped" in reply.error


def test_a_reply_with_a_recent_heartbeat_is_left_alone(conversation):
    _, reply = _send(conversation)
    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.STREAMING, heartbeat_at=timezone.now())
    assert services.replies_fail_stale() == 0
    reply.refresh_from_db()
    assert reply.status == MessageStatus.STREAMING


def test_a_reply_no_worker_picked_up_fails_after_the_queue_timeout(conversation, settings):
    _, reply = _send(conversation)
    Message.objects.filter(pk=reply.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.CHAT_QUEUED_TIMEOUT_S + 1)
    )
    assert services.replies_fail_stale() == 1
    reply.refresh_from_db()
    assert reply.status == MessageStatus.FAILED and "No worker" in reply.error


def test_embedded_start_up_fails_every_reply_left_active(conversation):
    _, reply = _send(conversation)
    assert services.replies_fail_stale(everything=True) == 1
    reply.refresh_from_db()
    assert reply.status == MessageStatus.FAILED


def test_conversations_are_found_only_by_their_owner(conversation, other_user):
    assert (
        selectors.conversation_get_owned(user=conversation.owner, conversation_id=conversation.pk)
        == conversation
    )
    assert selectors.conversation_get_owned(user=other_user, conversation_id=conversation.pk) is None
    assert selectors.conversation_get_owned(user=other_user, conversation_id="not-a-uuid") is None


def test_live_text_is_fresher_than_the_saved_text_while_streaming(conversation):
    _, reply = _send(conversation)
    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.STREAMING, content="Once")
    live.batch_send(message_id=reply.pk, text="Once upon a time", group=conversation.group_name, delta={})
    state = selectors.messages_state(conversation=conversation, message_ids=[])
    assert [(m["id"], m["content"]) for m in state] == [(reply.pk, "Once upon a time")]
    live.live_state_clear(reply.pk)


def test_deleting_a_conversation_removes_its_messages(conversation):
    _send(conversation)
    services.conversation_delete(conversation=conversation)
    assert not Message.objects.exists()

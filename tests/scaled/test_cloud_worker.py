"""A cloud worker started as docker-compose starts it, with no tuning: many people at once."""

import pytest

from chat import services
from chat.models import Message, MessageStatus
from tests.chat.conftest import make_cloud_provider
from tests.servers import MisbehavingProvider
from tests.waiting import wait_until

from .conftest import WorkerProcess

pytestmark = [pytest.mark.scaled, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REPLIES = 50
TOKENS = 40


@pytest.fixture
def paced_provider():
    server = MisbehavingProvider(interval=0.25, tokens=TOKENS)  # each reply streams for 10 s
    yield server
    server.stop()


def test_one_cloud_worker_at_its_defaults_streams_fifty_replies_at_once(make_user, tmp_path, paced_provider):
    make_cloud_provider("paced", paced_provider.base_url, "sk-test-key", "paced")
    model_id = "cloud:paced/paced"
    worker = WorkerProcess(tmp_path / "worker.log", queues="cloud")
    try:
        conversations = [
            services.conversation_create(owner=make_user(), model_id=model_id) for _ in range(REPLIES)
        ]
        ids = [
            services.message_send(conversation=conversation, content=f"Question {index}", model_id=model_id)[
                1
            ].pk
            for index, conversation in enumerate(conversations)
        ]
        streaming = Message.objects.filter(pk__in=ids, status=MessageStatus.STREAMING)
        wait_until(
            lambda: streaming.count() == REPLIES, timeout=60, what="every reply to be streaming at once"
        )
        services.reply_stop(conversation=conversations[0])
        finished = Message.objects.filter(pk__in=ids, finished_at__isnull=False)
        wait_until(lambda: finished.count() == REPLIES, timeout=120, what="every reply to finish")
    finally:
        worker.stop()

    replies = {reply.pk: reply for reply in Message.objects.filter(pk__in=ids)}
    stopped, *others = (replies[pk] for pk in ids)
    assert stopped.status == MessageStatus.STOPPED
    assert stopped.content.startswith("w0 ") and stopped.completion_tokens < TOKENS
    whole = "".join(f"w{index} " for index in range(TOKENS))
    assert [(r.status, r.content, r.completion_tokens) for r in others] == [
        (MessageStatus.DONE, whole, TOKENS)
    ] * len(others)
    # All of them were taken before the first one was done: none waited for a free thread.
    assert max(r.started_at for r in replies.values()) < min(r.finished_at for r in others)

"""/metrics in scaled mode: queue depth read from the broker's own lists in Redis, live workers
from their heartbeats, and a scrape that still answers while Redis is down."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chat.models import Message, MessageStatus, Role
from localai_site.core.queues import Queue
from localai_site.core.redis_client import redis_client
from localai_site.core.tasks import task_enqueue
from tests.servers import free_port
from tests.test_metrics import TOKEN, samples, scrape
from tests.waiting import wait_until

from .conftest import WorkerProcess

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return settings


def test_queue_depth_counts_tasks_no_worker_took_and_workers_serving_each_queue(
    client, metrics_token, tmp_path
):
    for _ in range(3):  # nobody serves the exports queue yet
        task_enqueue("accounts.clear_expired_sessions", queue=Queue.EXPORTS)
    found = samples(scrape(client).content.decode())
    assert found["localai_redis_up", frozenset()] == 1
    assert found["localai_queue_depth", frozenset({("queue", "exports")})] == 3
    assert found["localai_queue_depth", frozenset({("queue", "cloud")})] == 0
    assert found["localai_workers", frozenset({("queue", "exports")})] == 0

    worker = WorkerProcess(tmp_path / "worker.log", queues="exports")
    try:
        wait_until(
            lambda: (
                samples(scrape(client).content.decode())[
                    "localai_queue_depth", frozenset({("queue", "exports")})
                ]
                == 0
            ),
            what="the worker to take the exports",
        )
        found = samples(scrape(client).content.decode())
        assert found["localai_workers", frozenset({("queue", "exports")})] == 1
        assert found["localai_workers", frozenset({("queue", "local")})] == 0
    finally:
        worker.stop()


def test_a_scrape_while_redis_is_down_says_so_and_counts_the_rest(client, metrics_token, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis_client.cache_clear()
    try:
        response = scrape(client)
    finally:
        redis_client.cache_clear()
    assert response.status_code == 200
    found = samples(response.content.decode())
    assert found["localai_redis_up", frozenset()] == 0
    assert ("localai_queue_depth", frozenset({("queue", "local")})) not in found
    assert found["localai_replies_in_progress", frozenset({("kind", "local"), ("status", "queued")})] == 0


def test_the_operations_page_reads_the_broker_and_draws_each_day(client, admin, user, make_conversation):
    conversation = make_conversation(user)
    Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, status=MessageStatus.DONE, finished_at=timezone.now()
    )
    task_enqueue("accounts.clear_expired_sessions", queue=Queue.CLOUD)
    client.force_login(admin)
    page = client.get("/admin/operations/").content.decode()
    assert '<th scope="row">cloud</th><td>1</td><td class="due-late">0</td>' in page
    assert "No worker is running" in page
    assert f"<title>{timezone.localdate():%d %b}: 1 by local models</title>" in page

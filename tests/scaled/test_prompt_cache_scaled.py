"""A deleted conversation's prompt, kept by a `localai worker`'s model runner, is dropped there:
the web process tells each worker that holds a model, on the worker's own queue."""

from __future__ import annotations

import pytest

from chat import services
from models_hub.workers import workers_list
from tests.chat.test_prompt_cache import OPENING, answered
from tests.scaled.conftest import WorkerProcess
from tests.waiting import wait_until

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def short_worker(transactional_db, local_model, tmp_path, settings):
    assert settings.SCALED and not settings.TASKS_IN_PROCESS, "scaled tests run with REDIS_URL set"
    process = WorkerProcess(tmp_path / "worker.log", CHAT_MAX_TOKENS="8")
    yield process
    process.stop()


def prompts_held_on_workers() -> int:
    return sum(model.get("prompts_held", 0) for worker in workers_list() for model in worker.loaded)


def test_deleting_conversations_drops_their_prompts_on_the_worker(short_worker, make_conversation, user):
    answered(make_conversation(user), OPENING)
    answered(make_conversation(user), "Tell me about boats.")
    wait_until(lambda: prompts_held_on_workers() == 2, timeout=15, what="the worker to hold both")
    services.conversations_clear(user=user, local=True)
    wait_until(lambda: prompts_held_on_workers() == 0, timeout=15, what="the worker to drop them")

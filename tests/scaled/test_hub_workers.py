"""The hub with real worker processes: heartbeats with loaded models, replies routed to
the worker that holds the model, and a download that survives its worker being killed."""

from __future__ import annotations

import re
import shutil

import pytest
from channels.db import database_sync_to_async

from models_hub import services
from models_hub.bundled import bundled_model_path
from models_hub.models import LocalModelStatus
from models_hub.workers import local_queue_for, workers_list
from tests.chat.socket_client import open_socket, session_cookie_for
from tests.conftest import PASSWORD
from tests.models_hub.conftest import fresh, settled
from tests.servers import HubServer
from tests.waiting import wait_until, wait_until_async

from .conftest import WorkerProcess

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]

MB = 1000 * 1000
RECEIVED = re.compile(rb"Task chat\.generate_reply\[[\w-]+\] received")


@pytest.fixture
def two_local_workers(request, transactional_db, local_model, tmp_path, settings):
    """Two local workers; their replies' token limit is the indirect parameter, 16 by default."""
    assert settings.SCALED
    max_tokens = getattr(request, "param", "16")
    started = [WorkerProcess(tmp_path / f"worker-{n}.log", CHAT_MAX_TOKENS=max_tokens) for n in (1, 2)]
    yield started
    for process in started:
        process.stop()


def _holder(slug: str, workers):
    """The worker process whose heartbeat lists ``slug`` (loaded by a first reply)."""
    holders = [w for w in workers_list() if w.holds(slug)]
    return next((p for p in workers if [h.pid for h in holders] == [p.proc.pid]), None)


async def _reply(conversation, cookie) -> dict:
    socket = await open_socket(conversation.pk, cookie)
    await socket.send({"type": "send", "content": "Say hi."})
    final = await socket.reply_finished()
    await socket.close()
    return final


@pytest.mark.asyncio
async def test_replies_go_to_the_worker_that_already_holds_the_model(two_local_workers, conversation, user):
    cookie = await database_sync_to_async(session_cookie_for)(user)
    first = await _reply(conversation, cookie)
    assert first["status"] == "done", first["error"]

    # The worker that answered says so in its heartbeat, at once.
    holders = await wait_until_async(
        lambda: [w for w in workers_list() if w.holds(conversation.model.partition(":")[2]) and not w.busy],
        timeout=20,
        what="a heartbeat listing the loaded model",
    )
    assert len(holders) == 1
    holder = next(p for p in two_local_workers if p.proc.pid == holders[0].pid)
    other = next(p for p in two_local_workers if p is not holder)

    for _ in range(2):
        final = await _reply(conversation, cookie)
        assert final["status"] == "done", final["error"]
    assert len(RECEIVED.findall(holder.log_path.read_bytes())) == 3
    assert RECEIVED.findall(other.log_path.read_bytes()) == []


@pytest.fixture
def bob_conversation(make_conversation, other_user):
    return make_conversation(other_user)


@pytest.mark.asyncio
@pytest.mark.parametrize("two_local_workers", ["400"], indirect=True)
async def test_a_reply_joins_the_worker_already_writing_one_with_that_model(
    two_local_workers, local_model, conversation, user, bob_conversation, other_user
):
    ann_cookie = await database_sync_to_async(session_cookie_for)(user)
    bob_cookie = await database_sync_to_async(session_cookie_for)(other_user)
    assert (await _reply(conversation, ann_cookie))["status"] == "done"
    holder = await wait_until_async(
        lambda: _holder(local_model.slug, two_local_workers), timeout=20, what="one worker holding the model"
    )
    other = next(p for p in two_local_workers if p is not holder)

    ann = await open_socket(conversation.pk, ann_cookie)
    await ann.send({"type": "send", "content": "Tell me a long story about a lighthouse keeper."})
    await ann.receive_until(lambda f: f["type"] == "delta")
    writing = await wait_until_async(
        lambda: [w for w in workers_list() if w.pid == holder.proc.pid and w.busy],
        timeout=10,
        what="the holder's heartbeat saying it is writing",
    )
    # Writing Ann's reply, it still has slots free on the model: Bob's goes straight to it.
    assert local_queue_for(local_model) == writing[0].own_queue
    bob = await open_socket(bob_conversation.pk, bob_cookie)
    await bob.send({"type": "send", "content": "Tell me a long story about a baker."})
    bob_final = await bob.reply_finished()
    ann_final = await ann.reply_finished()
    await ann.close()
    await bob.close()

    assert (ann_final["status"], bob_final["status"]) == ("done", "done")
    assert len(RECEIVED.findall(holder.log_path.read_bytes())) == 3
    assert RECEIVED.findall(other.log_path.read_bytes()) == []


@pytest.mark.asyncio
async def test_a_worker_that_stops_takes_no_more_replies_at_once(
    two_local_workers, local_model, conversation, user
):
    cookie = await database_sync_to_async(session_cookie_for)(user)
    assert (await _reply(conversation, cookie))["status"] == "done"
    holder = await wait_until_async(
        lambda: _holder(local_model.slug, two_local_workers), timeout=20, what="one worker holding the model"
    )
    other = next(p for p in two_local_workers if p is not holder)
    assert await database_sync_to_async(local_queue_for)(local_model) != "local"  # its own queue
    holder.stop()  # its heartbeat would have lasted half a minute more
    assert holder.proc.pid not in {w.pid for w in await database_sync_to_async(workers_list)()}
    assert await database_sync_to_async(local_queue_for)(local_model) == "local"
    final = await _reply(conversation, cookie)
    assert final["status"] == "done", final["error"]
    assert len(RECEIVED.findall(other.log_path.read_bytes())) == 1


def test_a_local_only_worker_runs_local_concurrency_tasks_at_once_on_threads(transactional_db, tmp_path):
    worker = WorkerProcess(tmp_path / "worker.log", LOCAL_CONCURRENCY="5")
    try:
        banner = worker.log_path.read_text()
    finally:
        worker.stop()
    # Celery's start-up banner: the pool the replies run on, and its size.
    assert re.search(r"concurrency: 5 \(thread\)", banner), banner


def test_the_hub_page_shows_each_worker_and_what_it_holds(two_local_workers, local_model, make_user, client):
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    client.login(email=admin.email, password=PASSWORD)
    pids = {p.proc.pid for p in two_local_workers}
    wait_until(lambda: {w.pid for w in workers_list()} >= pids, timeout=20, what="both heartbeats")
    html = client.get("/hub/").content.decode()
    for pid in pids:
        assert f":{pid}</code>" in html
    assert "none yet (loaded on first use)" in html


def test_a_download_whose_worker_is_killed_fails_and_resumes_on_another(
    transactional_db, local_model, make_user, tmp_path, settings
):
    hub = HubServer(rate=25 * MB)
    files = tmp_path / "hub"
    files.mkdir()
    shutil.copyfile(bundled_model_path(), files / "model.gguf")
    hub.add("test-org/model-GGUF", "model.gguf", files / "model.gguf")
    env = {
        "HF_ENDPOINT": hub.endpoint,
        "LOCALAI_MODELS_DIR": str(tmp_path / "models"),
        "HUB_DISK_RESERVE_MB": "0",
        "HUB_PROGRESS_INTERVAL_MS": "100",
    }
    settings.MODELS_DIR = tmp_path / "models"
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    downloader = WorkerProcess(tmp_path / "downloads-1.log", queues="downloads", **env)
    try:
        model = services.model_add_from_hub(repo="test-org/model-GGUF", file="model.gguf", requested_by=admin)
        wait_until(
            lambda: fresh(model).downloaded_bytes > 20 * MB, timeout=60, what="the worker to download 20 MB"
        )
        downloader.kill()
    finally:
        downloader.stop()

    settings.HUB_STALE_AFTER_S = 1
    wait_until(services.downloads_fail_stale, timeout=10, what="the download to be seen as stopped")
    model = fresh(model)
    assert model.status == LocalModelStatus.FAILED and "worker went away" in model.error
    kept = (tmp_path / "models" / model.slug / "model.gguf.partial").stat().st_size
    assert kept > 20 * MB

    hub.rate = None
    second = WorkerProcess(tmp_path / "downloads-2.log", queues="downloads", **env)
    try:
        services.model_download_start(model=model, requested_by=admin)
        model = settled(model, timeout=60)
    finally:
        second.stop()
        hub.stop()
    assert model.status == LocalModelStatus.READY, model.error
    assert hub.ranges_asked() == [None, f"bytes={kept}-"]
    assert model.sha256 == hub.files[("test-org/model-GGUF", "model.gguf")].sha256

"""The scaled path for real: Redis channel layer and broker, a separate worker process."""

import asyncio
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, MessageStatus
from tests.chat.socket_client import ChatSocket, open_socket, session_cookie_for
from tests.waiting import wait_until_async

from .conftest import WorkerProcess

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


async def _open(conversation, user) -> ChatSocket:
    return await open_socket(conversation.pk, await database_sync_to_async(session_cookie_for)(user))


@pytest.mark.asyncio
async def test_a_worker_process_streams_the_reply_to_the_socket(worker, conversation, user):
    socket = await _open(conversation, user)
    await socket.send({"type": "send", "content": "Name three rivers."})
    final = await socket.reply_finished()
    assert final["status"] == "done", final["error"]
    saved = await database_sync_to_async(Message.objects.get)(pk=final["id"])
    deltas = [f for f in socket.frames if f["type"] == "delta"]
    assert len(deltas) > 1 and "".join(d["text"] for d in deltas) == saved.content
    assert socket.texts[final["id"]] == saved.content
    assert saved.completion_tokens > 0 and saved.provider == "local"
    await socket.close()


@pytest.mark.asyncio
async def test_stop_reaches_the_worker_through_redis(worker, conversation, user):
    socket = await _open(conversation, user)
    await socket.send({"type": "send", "content": "Write a very long story about a dragon."})
    await socket.receive_until(lambda f: f["type"] == "delta" and f["offset"] > 0)
    await socket.send({"type": "stop"})
    final = await socket.reply_finished(timeout=30)
    assert final["status"] == "stopped"
    saved = await database_sync_to_async(Message.objects.get)(pk=final["id"])
    assert saved.content and saved.completion_tokens < 400
    await socket.close()


@pytest.mark.asyncio
async def test_a_killed_worker_leaves_a_failed_reply_with_its_partial_text(
    worker, conversation, user, settings
):
    settings.CHAT_STALE_AFTER_S = 2
    socket = await _open(conversation, user)
    await socket.send({"type": "send", "content": "Write a very long story about a dragon."})
    delta = await socket.receive_until(lambda f: f["type"] == "delta" and f["offset"] > 0)
    reply_id = delta["id"]
    # Wait for at least one periodic save, then kill the worker without warning.
    saved = await wait_until_async(
        lambda: Message.objects.filter(pk=reply_id).exclude(content="").first(),
        timeout=20,
        what="the first periodic save of the reply",
    )
    worker.kill()
    await socket.close()
    await asyncio.sleep(settings.CHAT_STALE_AFTER_S + 1)  # long enough for the reply to look abandoned

    # Opening the conversation again finds the reply abandoned and says so.
    reopened = await _open(conversation, user)
    final = await reopened.reply_finished(timeout=10)
    assert final["id"] == reply_id and final["status"] == "failed"
    assert "worker stopped" in final["error"]
    await database_sync_to_async(saved.refresh_from_db)()
    assert saved.status == MessageStatus.FAILED
    assert saved.content and final["content"] == saved.content
    await reopened.close()


def test_readyz_needs_a_live_local_worker(transactional_db, local_model, tmp_path, client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["workers"]["local"] == 0 and response.json()["redis"] == "ok"
    worker = WorkerProcess(tmp_path / "worker.log")
    try:
        response = client.get("/readyz")
        assert response.status_code == 200, response.json()
        assert response.json()["workers"]["local"] == 1
    finally:
        worker.stop()


@pytest.mark.asyncio
async def test_a_local_reply_in_scaled_mode_connects_only_to_loopback(
    transactional_db, local_model, conversation, user, tmp_path
):
    from tests.netaudit import connections_recorded, outside_loopback  # its import adds an audit hook

    log = tmp_path / "connections.log"
    audit = str(Path(__file__).resolve().parent.parent / "netaudit")
    worker = await database_sync_to_async(WorkerProcess)(
        tmp_path / "worker.log", PYTHONPATH=audit, LOCALAI_CONNECT_LOG=str(log)
    )
    try:
        socket = await _open(conversation, user)
        with connections_recorded() as web_hosts:
            await socket.send({"type": "send", "content": "Tell me a secret recipe."})
            final = await socket.reply_finished()
        await socket.close()
    finally:
        worker.stop()
    assert final["status"] == "done"
    worker_hosts = [line.split()[0] for line in log.read_text().splitlines()]
    assert worker_hosts, "the audit hook saw the worker's own Redis and database connections"
    assert outside_loopback(worker_hosts) == [] and outside_loopback(web_hosts) == []

"""A model runner that dies under a `localai worker`: the worker lives on, the socket hears."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from channels.db import database_sync_to_async

from chat.models import MessageStatus
from models_hub.runner_protocol import RUNNER_MODULE
from tests.chat.socket_client import ChatSocket, open_socket, session_cookie_for
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


async def runner_of(worker) -> psutil.Process:
    """The worker's model runner (started with the worker's first local reply)."""

    def find():
        for child in psutil.Process(worker.proc.pid).children(recursive=True):
            if RUNNER_MODULE in " ".join(child.cmdline()) and "serve" in child.cmdline():
                return child
        return None

    return await wait_until_async(find, timeout=60, what="the worker's model runner")


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
async def test_a_worker_whose_runner_dies_fails_that_reply_and_answers_the_next(
    worker, conversation, user, sig
):
    socket: ChatSocket = await open_socket(
        conversation.pk, await database_sync_to_async(session_cookie_for)(user)
    )
    await socket.send({"type": "send", "content": "Write a very long story about a dragon."})
    await socket.receive_until(lambda f: f["type"] == "delta" and f["offset"] > 0, timeout=90)
    runner = await runner_of(worker)
    os.kill(runner.pid, sig)
    failed = await socket.reply_finished(timeout=5)
    assert failed["status"] == MessageStatus.FAILED
    assert "The local model runtime stopped unexpectedly (signal" in failed["error"]
    assert socket.texts[failed["id"]].strip(), "the browser keeps the words written before the crash"
    assert worker.proc.poll() is None, "the worker process lives on"

    await socket.send({"type": "send", "content": "Say hello."})
    answered = await socket.reply_finished(timeout=90)
    assert answered["status"] == MessageStatus.DONE and answered["content"].strip()
    new_runner = await runner_of(worker)
    assert new_runner.pid != runner.pid
    await socket.close()

"""When the model runtime fails under a reply: crashes, crash loops, slow loads, late results.

Embedded mode, as ``localai serve`` runs it: replies are written on the in-process pool,
the model in a real runner process, which these tests kill for real.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from django.urls import reverse

from chat import live, services
from chat.models import Message, MessageStatus, Role
from localai_site.core.refusals import Refusal
from models_hub import probe, runtime
from models_hub.models import LocalModel
from models_hub.runner_protocol import FAULT_ENV
from models_hub.supervisor import supervisor
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LONG_PROMPT = "Write a very long story about a dragon."


@pytest.fixture(autouse=True)
def own_runner(settings):
    settings.CHAT_MAX_TOKENS = 600
    supervisor.stop()
    yield
    supervisor.env.clear()
    supervisor.stop()


def settled(reply: Message, timeout: float = 60) -> Message:
    return wait_until(
        lambda: (
            (m := Message.objects.get(pk=reply.pk)).status
            not in (MessageStatus.QUEUED, MessageStatus.STREAMING)
            and m
        ),
        timeout=timeout,
        what=f"reply {reply.pk} to end",
    )


def kill_runner_once_writing(reply: Message, sig: signal.Signals) -> None:
    """Kill the runner once some of the reply is written (the shared live text shows it)."""

    def written_or_over():
        current = Message.objects.get(pk=reply.pk)
        assert current.status in (MessageStatus.QUEUED, MessageStatus.STREAMING), "it ended before the kill"
        return live.live_texts_get([reply.pk]).get(reply.pk)

    wait_until(written_or_over, timeout=60, what="the first words", every=0.01)
    os.kill(supervisor.current().pid, sig)


@pytest.mark.parametrize(
    ("sig", "how"), [(signal.SIGSEGV, "signal 11 (SIGSEGV)"), (signal.SIGKILL, "signal 9 (SIGKILL)")]
)
def test_a_runner_crash_fails_the_reply_with_its_words_and_the_next_message_is_answered(
    conversation, settings, sig, how
):
    _, reply = services.message_send(conversation=conversation, content=LONG_PROMPT)
    kill_runner_once_writing(reply, sig)
    failed = settled(reply, timeout=10)
    assert failed.status == MessageStatus.FAILED
    assert failed.content.strip(), "the words written before the crash are kept"
    assert f"The local model runtime stopped unexpectedly ({how})" in failed.error

    settings.CHAT_MAX_TOKENS = 16
    _, next_reply = services.message_send(conversation=conversation, content="Say hello.")
    answered = settled(next_reply)
    assert answered.status == MessageStatus.DONE and answered.content.strip()
    assert LocalModel.objects.get(pk=conversation_model(conversation).pk).runtime_crashes == 0


def conversation_model(conversation) -> LocalModel:
    return LocalModel.objects.get(slug=conversation.model.partition(":")[2])


def test_a_model_that_keeps_crashing_is_switched_off_until_an_admin_checks_it(
    conversation, settings, client, make_user
):
    model = conversation_model(conversation)
    for _ in range(runtime.UNHEALTHY_AFTER):
        _, reply = services.message_send(conversation=conversation, content=LONG_PROMPT)
        kill_runner_once_writing(reply, signal.SIGSEGV)
        failed = settled(reply)
        assert failed.status == MessageStatus.FAILED
    model.refresh_from_db()
    assert (
        "stopped the local model runtime 3 times in a row (last: signal 11 (SIGSEGV))"
        in model.unhealthy_reason
    )
    assert "is now switched off" in failed.error

    with pytest.raises(Refusal, match="is switched off") as refused:
        services.message_send(conversation=conversation, content="Hello?")
    assert refused.value.code == "model_unhealthy"

    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get(reverse("hub:index")).content.decode()
    assert "Switched off:" in page and "3 times in a row" in page
    assert "CPU features" in page and "llama.cpp 0.3" in page
    assert client.post(reverse("hub:health_reset", args=[model.slug])).status_code == 302
    model.refresh_from_db()
    assert model.unhealthy_reason == "" and model.runtime_crashes == 0

    settings.CHAT_MAX_TOKENS = 16
    _, reply = services.message_send(conversation=conversation, content="Say hello.")
    assert settled(reply).status == MessageStatus.DONE


def test_a_model_no_configuration_can_run_is_refused_with_the_reason(conversation, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # nothing remembered: the model is probed
    supervisor.env[FAULT_ENV] = "load"
    _, reply = services.message_send(conversation=conversation, content="Hello")
    failed = settled(reply)
    assert failed.status == MessageStatus.FAILED
    assert "cannot run on this machine" in failed.error and "every configuration tried" in failed.error
    assert "signal 11 (SIGSEGV)" in conversation_model(conversation).unhealthy_reason


def test_a_slow_start_is_not_taken_for_a_dead_worker(conversation, settings, tmp_path, client, make_user):
    # Starting the runner and probing the model take seconds before the first token:
    # several times the stale limit here. The reply's heartbeat keeps it alive.
    settings.CHAT_STALE_AFTER_S = 1
    settings.DATA_DIR = tmp_path
    settings.CHAT_MAX_TOKENS = 16
    stop_checking = threading.Event()
    failed_as_stale = []

    def stale_check() -> None:
        while not stop_checking.wait(0.2):
            failed_as_stale.append(services.replies_fail_stale())

    checker = threading.Thread(target=stale_check)
    checker.start()
    try:
        _, reply = services.message_send(conversation=conversation, content="Say hello.")
        done = settled(reply)
    finally:
        stop_checking.set()
        checker.join()
    assert done.status == MessageStatus.DONE, done.error
    assert sum(failed_as_stale) == 0 and len(failed_as_stale) >= 5
    [choice] = probe.results_here()  # it was probed, in this very reply
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get(reverse("hub:index")).content.decode()
    assert "How models run on this machine" in page and choice.reason in page


def test_a_late_result_never_brings_back_a_reply_that_was_replaced(conversation, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # a probe first: the first reply is slow to start
    _, first = services.message_send(conversation=conversation, content="Say hello.")
    wait_until(lambda: Message.objects.get(pk=first.pk).status == MessageStatus.STREAMING, what="a worker")
    # Its worker looks gone (as after a restart); the person writes the reply again.
    services.replies_fail_stale(everything=True)
    settings.CHAT_MAX_TOKENS = 16
    second = services.reply_regenerate(conversation=conversation, message_id=first.pk)
    # One local reply at a time: the second ran once the first had run its course.
    assert settled(second).status == MessageStatus.DONE
    replies = list(conversation.messages.filter(role=Role.ASSISTANT))
    assert [r.pk for r in replies] == [second.pk]

"""/metrics for the operator's Prometheus, and JSON log lines: what a scraper and a log
collector receive, and that neither carries a person's data or a secret."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
from datetime import timedelta

import pytest
from celery import shared_task
from django.utils import timezone

from accounts.json_logs import JsonLogFormatter
from accounts.models import CrashReport, CrashSource
from chat.models import Message, MessageStatus, Role
from localai_site.core.queues import Queue
from localai_site.core.tasks import task_enqueue, tasks_wait_idle
from localai_site.metrics import metrics_response
from models_hub.models import LocalModel, LocalModelStatus
from tests.test_proxy_headers import PROXY, _request_as_the_app_sees_it
from tests.test_settings import _settings_in_subprocess
from tests.waiting import wait_until

TOKEN = "scrape-0123456789abcdef"
_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """The exposition's samples: (name, its labels) → value; comments checked and skipped."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) \w+ .+$", line), line
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        found[name, pairs] = float(value)
    return found


def scrape(client, **headers):
    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return settings


def _reply(conversation, *, status, provider="local", model="local:smol", ago_s=10, **timing) -> Message:
    finished = None if status in (MessageStatus.QUEUED, MessageStatus.STREAMING) else timezone.now()
    return Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, status=status, provider=provider, model=model,
        finished_at=finished and finished - timedelta(seconds=ago_s), content="Lisbon in May", **timing,
    )  # fmt: skip


@pytest.mark.django_db
def test_metrics_are_off_until_a_token_or_an_allow_list_is_set(client):
    assert client.get("/metrics").status_code == 404
    assert scrape(client).status_code == 404


@pytest.mark.django_db
def test_a_scraper_without_the_token_is_refused(client, metrics_token):
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert b"localai_" not in refused.content


@pytest.mark.django_db
def test_a_scrape_counts_replies_speeds_downloads_and_errors_and_names_nobody(
    client, metrics_token, make_user, make_conversation
):
    person = make_user("ann.secret@example.com", display_name="Ann Secret")
    conversation = make_conversation(person, title="Trip to Lisbon")
    _reply(conversation, status=MessageStatus.STREAMING)
    _reply(conversation, status=MessageStatus.QUEUED, provider="acme", model="cloud:acme/small")
    _reply(conversation, status=MessageStatus.QUEUED, provider="acme", model="cloud:acme/small")
    # 50 tokens in 1 s after a 100 ms first token, then 100 in 1 s after 300 ms: 75 tokens/s.
    _reply(conversation, status=MessageStatus.DONE, ttft_ms=100, duration_ms=1100, completion_tokens=50)
    _reply(conversation, status=MessageStatus.DONE, ttft_ms=300, duration_ms=1300, completion_tokens=100)
    _reply(conversation, status=MessageStatus.FAILED, provider="acme", model="cloud:acme/small")
    _reply(
        conversation,
        status=MessageStatus.DONE,
        ttft_ms=9000,
        duration_ms=9900,
        completion_tokens=5,
        ago_s=3600,
    )
    LocalModel.objects.create(slug="qwen", name="Qwen", status=LocalModelStatus.DOWNLOADING)
    LocalModel.objects.create(slug="gemma", name="Gemma", status=LocalModelStatus.FAILED)
    CrashReport.objects.create(
        source=CrashSource.TASK, logger="celery", exception_type="builtins.ValueError", message="bad",
        traceback="Traceback", fingerprint="1" * 40, release="test", count=3,
    )  # fmt: skip

    response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(response.content.decode())
    assert found["localai_replies_in_progress", frozenset({("kind", "local"), ("status", "streaming")})] == 1
    assert found["localai_replies_in_progress", frozenset({("kind", "cloud"), ("status", "queued")})] == 2
    assert found["localai_replies_in_progress", frozenset({("kind", "cloud"), ("status", "streaming")})] == 0
    assert found["localai_replies_finished_recent", frozenset({("kind", "local"), ("status", "done")})] == 2
    assert found["localai_replies_finished_recent", frozenset({("kind", "cloud"), ("status", "failed")})] == 1
    assert found["localai_tokens_per_second", frozenset({("model", "local:smol")})] == 75
    ttft = {
        q: found["localai_time_to_first_token_seconds", frozenset({("model", "local:smol"), ("quantile", q)})]
        for q in ("0.5", "0.99")
    }
    assert ttft == {"0.5": 0.1, "0.99": 0.3}  # the reply an hour ago is outside the window
    assert found["localai_queue_depth", frozenset({("queue", "local")})] == 0
    assert found["localai_workers", frozenset({("queue", "cloud")})] == 1  # embedded: this process
    assert found["localai_model_downloads", frozenset({("status", "downloading")})] == 1
    assert found["localai_model_downloads", frozenset({("status", "failed")})] == 1
    assert found["localai_crash_reports", frozenset({("source", "task")})] == 1
    assert found["localai_crash_occurrences", frozenset({("source", "task")})] == 3
    body = response.content.decode().lower()
    for personal in ("ann", "secret", "example.com", "lisbon", "trip", str(conversation.pk)):
        assert not re.search(rf"\b{re.escape(personal)}\b", body), personal


@pytest.mark.django_db
def test_metrics_answer_the_scraper_whatever_host_name_it_uses(client, metrics_token):
    assert scrape(client, HTTP_HOST="web:8000").status_code == 200


@pytest.mark.django_db
def test_an_allowed_address_needs_no_token_and_no_other_gets_in(client, settings):
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.7").status_code == 403
    settings.METRICS_TOKEN = TOKEN  # either lets a scraper in
    assert scrape(client, REMOTE_ADDR="203.0.113.7").status_code == 200


@pytest.mark.django_db
def test_the_allow_list_sees_the_address_the_trusted_proxy_saw_never_a_forged_one(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(PROXY)]
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.9.0.0/16")]
    via_proxy = _request_as_the_app_sees_it(peer=PROXY, X_Forwarded_For="10.9.0.7")
    forged = _request_as_the_app_sees_it(peer="203.0.113.9", X_Forwarded_For="10.9.0.7")
    assert metrics_response(via_proxy).status_code == 200
    assert metrics_response(forged).status_code == 403


_release = threading.Event()


@shared_task(name="tests.wait_for_release")
def _wait_for_release() -> None:
    _release.wait(timeout=10)


@pytest.mark.django_db
def test_queue_depth_in_embedded_mode_counts_tasks_waiting_for_the_pool(client, metrics_token):
    _release.clear()
    depth = ("localai_queue_depth", frozenset({("queue", "exports")}))
    try:
        for _ in range(3):  # the exports pool has one thread: one runs, two wait
            task_enqueue("tests.wait_for_release", queue=Queue.EXPORTS)
        wait_until(lambda: samples(scrape(client).content.decode())[depth] == 2, what="two tasks waiting")
    finally:
        _release.set()
    tasks_wait_idle(Queue.EXPORTS, timeout=10)
    assert samples(scrape(client).content.decode())[depth] == 0


# --- JSON log lines -----------------------------------------------------------------------


def test_json_log_lines_carry_time_level_logger_message_and_exception_without_secrets(settings):
    record_logger = logging.getLogger("tests.json_logs")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonLogFormatter())
    record_logger.addHandler(handler)
    key = "lai_" + "k" * 8 + "1234567890abcdef"
    try:
        record_logger.warning("Key %s of %s refused", key, "ann@example.com")
        try:
            raise ValueError(f"Authorization: Bearer {key} with {settings.SECRET_KEY}")
        except ValueError:
            record_logger.exception("Request failed")
    finally:
        record_logger.removeHandler(handler)

    warning, error = (json.loads(line) for line in lines)
    assert set(warning) == {"time", "level", "logger", "message"}
    assert warning["level"] == "warning" and warning["logger"] == "tests.json_logs"
    assert warning["message"] == "Key <secret> of <email> refused"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", warning["time"])
    assert error["message"] == "Request failed" and error["level"] == "error"
    assert "Traceback" in error["exception"] and "ValueError" in error["exception"]
    assert key not in "".join(lines) and settings.SECRET_KEY not in "".join(lines)


def test_log_format_json_makes_every_line_of_the_process_a_json_object(tmp_path):
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('localai.test').warning('hello %s', 'there')"
    )
    result = _settings_in_subprocess(tmp_path, code=code, LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["logger"], line["level"], line["message"]) == ("localai.test", "warning", "hello there")

    plain = _settings_in_subprocess(tmp_path, code=code)
    assert plain.stderr.strip().splitlines()[-1].endswith("WARNING localai.test: hello there")

    refused = _settings_in_subprocess(tmp_path, code=code, LOG_FORMAT="yaml")
    assert refused.returncode != 0 and "LOG_FORMAT='yaml' must be one of: plain, json" in refused.stderr

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import BinaryIO

import pytest
from django.conf import settings
from django.db import connection

from tests.servers import free_port
from tests.waiting import wait_until_started


def child_database_url() -> str:
    """The test database, as a URL another process can open."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class LoggedProcess:
    """A child process of a test, its output in ``log``; ``stop`` ends it gently, then not."""

    proc: subprocess.Popen
    log: BinaryIO

    def localai_start(self, log_path: Path, command: list[str], env: dict[str, str]) -> None:
        """Runs ``localai <command>`` on the test database, its output in ``log_path``."""
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "localai"), *command],
            env={**os.environ, "DATABASE_URL": child_database_url(), **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class WorkerProcess(LoggedProcess):
    """A real `localai worker` process, as docker-compose runs it."""

    def __init__(self, log_path: Path, queues: str = "local", **env: str) -> None:
        self.localai_start(log_path, ["worker", "--queues", queues, "--loglevel", "info"], env)
        wait_until_started(
            self.proc,
            lambda: b" ready." in log_path.read_bytes(),
            what="the worker to be ready",
            log=log_path,
        )


def _answers_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.status == 200


class WebProcess(LoggedProcess):
    """A real `localai serve` (daphne: pages and sockets) on a port of its own, as docker-compose
    runs it."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-migrate"]
        self.localai_start(log_path, command, env)
        wait_until_started(
            self.proc,
            lambda: _answers_ok(f"{self.url}/healthz"),
            what="the web process to answer /healthz",
            log=log_path,
            ignoring=(OSError,),
        )


@pytest.fixture
def worker(transactional_db, local_model, tmp_path, settings):
    assert settings.SCALED and not settings.TASKS_IN_PROCESS, "scaled tests run with REDIS_URL set"
    process = WorkerProcess(tmp_path / "worker.log", CHAT_SAVE_INTERVAL_MS="200", CHAT_MAX_TOKENS="400")
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _clean_redis():
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()

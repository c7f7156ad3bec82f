"""`localai worker_alive`, the health check docker-compose runs in worker containers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

from .conftest import WorkerProcess, child_database_url

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


def _worker_alive() -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "localai"), "worker_alive"],
        env={**os.environ, "DATABASE_URL": child_database_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_alive_is_healthy_only_while_a_worker_of_this_machine_beats(tmp_path):
    before = _worker_alive()
    assert before.returncode == 1
    assert "No worker on this machine sent a heartbeat in the last 30 s." in before.stderr

    worker = WorkerProcess(tmp_path / "worker.log", queues="cloud")
    try:
        running = _worker_alive()
    finally:
        worker.stop()
    assert (running.returncode, running.stdout.strip()) == (0, "A worker on this machine is alive.")


def test_worker_alive_is_unhealthy_while_redis_does_not_answer(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    result = _worker_alive()
    assert result.returncode == 1
    assert "Redis does not answer" in result.stderr

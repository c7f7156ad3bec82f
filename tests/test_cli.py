"""The `localai` command as a newcomer runs it."""

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

LOCALAI = str(Path(sys.executable).parent / "localai")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return {**env, "LOCALAI_DATA_DIR": str(data_dir), **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_migrates_registers_the_bundled_model_and_answers(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [LOCALAI, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        first_line = server.stdout.readline().decode()
        assert f"http://127.0.0.1:{port}/" in first_line and "embedded" in first_line
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=20)
    with sqlite3.connect(tmp_path / "localai.sqlite3") as db:
        models = db.execute("select slug, is_default, status from models_hub_localmodel").fetchall()
    assert models == [("smollm2-135m-instruct", 1, "ready")]
    assert (tmp_path / "secret_key").exists()


def test_worker_explains_that_embedded_mode_needs_no_worker(tmp_path):
    result = subprocess.run(
        [LOCALAI, "worker"], env=_env(tmp_path), capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "needs REDIS_URL" in result.stderr


def test_manage_commands_run_through_localai(tmp_path):
    result = subprocess.run(
        [LOCALAI, "check"], env=_env(tmp_path), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout

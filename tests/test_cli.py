"""The `localai` command as a newcomer runs it."""

import http.cookiejar
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.servers import free_port
from tests.waiting import wait_until_started

LOCALAI = str(Path(sys.executable).parent / "localai")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return {**env, "LOCALAI_DATA_DIR": str(data_dir), **extra}


def test_serve_migrates_registers_the_bundled_model_and_answers(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [LOCALAI, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        first_line = server.stdout.readline().decode()
        assert f"http://127.0.0.1:{port}/" in first_line and "embedded" in first_line

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200

        wait_until_started(
            server, healthy, what="the server to answer /healthz", timeout=30, ignoring=(OSError,)
        )
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


def test_a_bad_port_or_setting_is_named_without_a_traceback(tmp_path):
    for variable, value, said in [
        ("LOCALAI_PORT", "80000", "LOCALAI_PORT=80000 is above the maximum of 65535"),
        ("LOCALAI_PORT", "http", "LOCALAI_PORT='http' is not a whole number"),
        ("TIME_ZONE", "Mars/Olympus", "TIME_ZONE='Mars/Olympus' is not a time zone name"),
    ]:
        result = subprocess.run(
            [LOCALAI, "serve"], env=_env(tmp_path, **{variable: value}), capture_output=True, text=True
        )
        assert result.returncode != 0
        assert said in result.stderr
        assert "Traceback" not in result.stderr


def test_serve_counts_signups_by_the_real_peer_whatever_address_it_forwards(tmp_path):
    port = free_port()
    signup = f"http://127.0.0.1:{port}/accounts/signup/"
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    server = subprocess.Popen(
        [LOCALAI, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def page_opens() -> bool:
        with browser.open(signup, timeout=5) as response:  # also sets the CSRF cookie
            return response.status == 200

    try:
        wait_until_started(server, page_opens, what="the signup page", ignoring=(OSError,))
        csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")

        def post_from(forwarded_for: str) -> int:
            headers = {"X-CSRFToken": csrf, "X-Forwarded-For": forwarded_for}
            try:
                with browser.open(urllib.request.Request(signup, b"", headers), timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as refused:
                return refused.code

        # allauth allows 20 signup attempts a minute per address; each claims a new one.
        statuses = [post_from(f"198.51.100.{n}") for n in range(21)]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert statuses == [200] * 20 + [429]

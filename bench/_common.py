"""Shared helpers for the benchmarks: starting the app's processes and reporting."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@contextmanager
def processes(*commands: tuple[list[str], dict[str, str], Path]):
    """Start each (argv, env, log file) and stop them all on exit."""
    started = []
    try:
        for argv, env, log in commands:
            handle = open(log, "wb")  # noqa: SIM115 - closed below
            started.append((subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT), handle))
        yield [proc for proc, _ in started]
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, handle in started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            handle.close()


def worker_heartbeats(redis_url: str, queue: str) -> list[dict]:
    """What the workers serving ``queue`` announce in Redis once Celery is ready
    (models_hub/workers.py): their queues and the local models their runner holds."""
    import redis

    client = redis.Redis.from_url(redis_url)
    beats = (json.loads(client.get(key) or b"{}") for key in client.scan_iter(match="localai:worker:*"))
    return [beat for beat in beats if queue in beat.get("queues", [])]


def wait_for_workers(redis_url: str, queue: str, count: int = 1, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(worker_heartbeats(redis_url, queue)) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the {queue} workers did not become ready")


def app_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {"LOCALAI_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "localai_site.settings"}, **extra
    )
    return env


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def report(result: dict) -> None:
    print(json.dumps(result), flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` fall (nearest rank)."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return round(ordered[rank - 1], 2)


def log(text: str) -> None:
    """Progress goes to stderr: stdout carries only the JSON line."""
    print(f"# {text}", file=sys.stderr, flush=True)


@contextmanager
def fresh_postgres_database(server_url: str):
    """A new, empty database on the PostgreSQL server of ``server_url`` (whatever database
    the URL names is ignored); yields the new database's URL and drops it on exit."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(server_url)
    name = f"localai_bench_{uuid.uuid4().hex[:10]}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))  # the maintenance database
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def session_cookie(user) -> str:
    """A ``Cookie`` header value that logs ``user`` in, as a browser would send it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _logs_keep(data_dir: Path, keep: Path) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    for log_file in data_dir.glob("*.log"):
        shutil.copy(log_file, keep / log_file.name)


@contextmanager
def bench_environment(database_url: str | None, **extra: str):
    """A throwaway data folder (and, given a PostgreSQL server URL, a throwaway database),
    set in this process's environment; yields (data folder, environment for children).
    BENCH_LOGS=<folder> keeps the children's logs there (they go with the data folder)."""
    import tempfile
    from contextlib import ExitStack

    data_dir = Path(tempfile.mkdtemp(prefix="localai-bench-"))
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
        if keep := os.environ.get("BENCH_LOGS"):
            cleanup.callback(_logs_keep, data_dir, Path(keep))
        database = cleanup.enter_context(fresh_postgres_database(database_url)) if database_url else ""
        env = app_env(data_dir, DATABASE_URL=database, **extra)
        os.environ.update(env)
        yield data_dir, env

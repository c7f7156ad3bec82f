"""docker-compose.yml and deploy/docker-compose.traefik.yml, with no Docker engine: valid against
the Compose Specification's schema, and the health checks run for real where they can."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from tests.servers import free_port
from tests.waiting import wait_until_started

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
TRAEFIK = ROOT / "deploy" / "docker-compose.traefik.yml"
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _merged(base: dict, override: dict) -> dict:
    """How compose lays a later file over an earlier one, as far as these files need: mappings
    merge, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        both_mappings = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merged(base[key], value) if both_mappings else value
    return merged


def _project(*files: Path) -> dict:
    project: dict = {}
    for file in files:
        project = _merged(project, yaml.safe_load(file.read_text()))
    return project


def _started(project: dict) -> dict:
    """The services a plain `docker compose up` starts: none of a profile."""
    return {name: service for name, service in project["services"].items() if not service.get("profiles")}


def _interpolated(text: str, env: dict[str, str]) -> str:
    """``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` as compose fills them in."""

    def value(match: re.Match) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return rest
        raise AssertionError(f"compose refuses to start: {rest or name + ' is not set'}")

    return _VARIABLE.sub(value, text)


def test_the_compose_files_are_valid_for_compose():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
            str(TRAEFIK),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, TRAEFIK]], ids=["nginx", "traefik"])
def test_every_service_that_keeps_running_has_a_healthcheck(files):
    services = _project(*files)["services"]
    long_running = {name for name, service in services.items() if service.get("restart") != "no"}
    checked = {name for name, service in services.items() if service.get("healthcheck", {}).get("test")}
    assert long_running - checked == set()
    assert "migrate" not in long_running  # one-shot: the others wait for it to exit instead


def test_every_service_that_reaches_redis_sends_its_password():
    services = _project(COMPOSE)["services"]
    urls = {
        name: service["environment"]["REDIS_URL"]
        for name, service in services.items()
        if "REDIS_URL" in service.get("environment", {})
    }
    assert set(urls) == {"migrate", "web", "worker-local", "worker-gpu", "worker-cloud", "beat"}
    assert set(urls.values()) == {"redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0"}


def test_the_redis_healthcheck_is_healthy_only_with_the_password(tmp_path):
    redis = _project(COMPOSE)["services"]["redis"]
    env = {"REDIS_PASSWORD": "0123456789abcdef"}
    port = free_port()
    command = [_interpolated(part, env) for part in redis["command"]]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    kind, check = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    check = check.replace("redis-cli", f"redis-cli -p {port}")

    def healthcheck(password: str) -> int:
        env = {**os.environ, "REDISCLI_AUTH": password}
        return subprocess.run(["sh", "-c", check], env=env, capture_output=True, timeout=10).returncode

    try:
        given = _interpolated(redis["environment"]["REDISCLI_AUTH"], env)
        wait_until_started(server, lambda: healthcheck(given) == 0, what="Redis to answer its healthcheck")
        assert healthcheck("not-the-password") == 1
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_beat_healthcheck_follows_the_schedule_file_that_beat_writes(tmp_path):
    beat = _project(COMPOSE)["services"]["beat"]
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    *kind, code = beat["healthcheck"]["test"]
    assert kind == ["CMD", "python", "-c"] and schedule in code
    code = code.replace(schedule, str(tmp_path / "celerybeat-schedule"))

    def healthcheck() -> int:
        return subprocess.run([sys.executable, "-c", code], timeout=10).returncode

    assert healthcheck() == 1  # no beat has written it
    command = [*beat["command"]]
    command[command.index("--schedule") + 1] = str(tmp_path / "celerybeat-schedule")
    env = {name: value for name, value in os.environ.items() if name not in ("REDIS_URL", "DATABASE_URL")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / command[0]), *command[1:]],
        env={**env, "LOCALAI_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_started(process, lambda: healthcheck() == 0, what="beat to write its schedule")
    finally:
        process.terminate()
        process.wait(timeout=20)
    eleven_minutes_ago = time.time() - 11 * 60
    for written in tmp_path.glob("celerybeat-schedule*"):
        os.utime(written, (eleven_minutes_ago, eleven_minutes_ago))
    assert healthcheck() == 1


class _Web(BaseHTTPRequestHandler):
    """What nginx hands on to web: answers ``status``, remembering the paths asked."""

    status = 200
    asked: list[str] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (502, False)])
def test_the_proxy_healthcheck_asks_web_for_healthz_through_the_proxy(status, healthy):
    *kind, script = _project(COMPOSE)["services"]["proxy"]["healthcheck"]["test"]
    assert kind == ["CMD", "bash", "-c"] and "/dev/tcp/127.0.0.1/80 " in script
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Web", (_Web,), {"status": status, "asked": []}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        result = subprocess.run(
            ["bash", "-c", script.replace("/127.0.0.1/80 ", f"/127.0.0.1/{port} ")], timeout=10
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy
    assert server.RequestHandlerClass.asked == ["/healthz"]


def test_the_workers_healthcheck_is_their_heartbeat():
    services = _project(COMPOSE)["services"]
    workers = {
        name for name, service in services.items() if service.get("command", [])[:2] == ["localai", "worker"]
    }
    assert workers == {"worker-local", "worker-gpu", "worker-cloud"}
    # tests/scaled/test_worker_health.py runs this command beside a real worker.
    assert {tuple(services[name]["healthcheck"]["test"]) for name in workers} == {
        ("CMD", "localai", "worker_alive")
    }


def test_the_gpu_profile_adds_a_local_worker_on_an_nvidia_gpu_with_the_cuda_build():
    project = _project(COMPOSE)
    services = project["services"]
    gpu = services["worker-gpu"]
    assert "worker-gpu" not in _started(project) and gpu["profiles"] == ["gpu"]
    assert gpu["command"] == services["worker-local"]["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "${GPU_COUNT:-1}", "capabilities": ["gpu"]}
    ]
    assert _interpolated(gpu["environment"]["LLAMA_GPU_LAYERS"], {}) == "-1"  # every layer
    # The CPU worker can be turned off beside it, and runs one by default.
    assert _interpolated(services["worker-local"]["deploy"]["replicas"], {}) == "1"

    assert gpu["build"]["args"]["ACCELERATOR"] == "cuda" and gpu["image"] != services["web"]["image"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE))
    for accelerator in ("cpu", "cuda"):
        assert {f"compilers-{accelerator}", f"system-{accelerator}"} <= stages
    assert re.search(r"^FROM compilers-\$\{ACCELERATOR\} AS builder$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^FROM system-\$\{ACCELERATOR\}$", dockerfile, flags=re.MULTILINE)


def test_traefik_takes_the_edge_with_https_and_is_the_only_proxy_the_app_believes():
    project = _project(COMPOSE, TRAEFIK)
    started = _started(project)
    assert "proxy" not in started  # nginx starts only with --profile nginx
    on_edge = sorted(name for name, service in started.items() if "edge" in service.get("networks", ()))
    assert on_edge == ["traefik", "web"]
    assert [name for name, service in started.items() if service.get("ports")] == ["traefik"]
    assert (
        project["x-app-env"]["TRUSTED_PROXIES"] == project["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    )

    flags = dict(flag.split("=", 1) for flag in started["traefik"]["command"])
    # First hop: no forwarded header from a client is trusted.
    assert not any("forwardedHeaders" in flag for flag in flags)
    assert flags["--entryPoints.web.http.redirections.entryPoint.to"] == "websecure"
    labels = dict(label.split("=", 1) for label in started["web"]["labels"])
    assert labels["traefik.docker.network"] == f"{project['name']}_edge"
    routers = {key.split(".")[3] for key in labels if key.startswith("traefik.http.routers.")}
    assert routers == {"localai", "localai-posts"}
    for router in routers:
        assert labels[f"traefik.http.routers.{router}.entryPoints"] == "websecure"
        resolver = labels[f"traefik.http.routers.{router}.tls.certResolver"]
        assert f"--certificatesResolvers.{resolver}.acme.storage" in flags
        assert "localai-hsts" in labels[f"traefik.http.routers.{router}.middlewares"].split(",")


def test_traefik_limits_uploads_but_never_buffers_the_streamed_api():
    labels = dict(label.split("=", 1) for label in _project(COMPOSE, TRAEFIK)["services"]["web"]["labels"])
    limit = int(labels["traefik.http.middlewares.localai-body-limit.buffering.maxRequestBodyBytes"])
    assert limit > settings.UPLOAD_MAX_BYTES  # the app's own message for a file too large
    buffered = [
        key for key, value in labels.items() if key.endswith(".middlewares") and "localai-body-limit" in value
    ]
    assert buffered == ["traefik.http.routers.localai-posts.middlewares"]
    assert "!PathPrefix(`/v1/`)" in labels["traefik.http.routers.localai-posts.rule"]

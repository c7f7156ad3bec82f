"""The shipped nginx configuration (deploy/nginx/) run by the real nginx, with TLS, in front of
two `localai serve` processes and two workers (scaled mode, on loopback), at the root and under
/ai/, and used through it in Chromium as a person does: sign in, a streamed chat, Stop pressed
in a page whose socket is held by the other web process, an upload, a data download; the admin
and the API answer there too.

Only what ties the configuration to this machine is changed in it (ports, certificate paths,
which snippet of locations the server includes); each change must find its text, so the test
fails when the files drift from what it runs.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import ssl
import subprocess
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings
from playwright.sync_api import BrowserContext, Page, Request, expect, sync_playwright

from accounts.api_keys import api_key_create
from chat.models import Message, MessageStatus, Role, Upload
from localai_site.core.realtime import redis_pubsub_message
from tests.browser.base import CHROMIUM, CHROMIUM_ARGS, REPLY_TIMEOUT_MS, REPORT_CSP_VIOLATIONS_JS, last_reply
from tests.conftest import PASSWORD
from tests.scaled.conftest import LoggedProcess, WebProcess, WorkerProcess
from tests.servers import free_port, loopback_certificate
from tests.waiting import wait_until, wait_until_started

pytestmark = [
    pytest.mark.scaled,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not shutil.which("nginx"), reason="no nginx (scripts/test-prerequisites.sh)"),
]

DEPLOY = Path(settings.BASE_DIR) / "deploy" / "nginx"
SUB_PATH = "/ai"  # the prefix deploy/nginx/snippets/localai-at-ai.conf serves
REPLY_TOKENS = 400  # long enough to press Stop in the middle of
LONG_PROMPT = "Write a very long story about a dragon."
UPLOAD_BYTES = 3 * 1024 * 1024  # over nginx's default body limit of 1 MB


def _replaced(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx/conf.d/localai.conf no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


class Nginx(LoggedProcess):
    """The real nginx in the foreground, all its files in ``directory``: the shipped site and
    snippets inside a main configuration of the test's own (pid, logs, temporary files)."""

    def __init__(self, directory: Path, *, web_ports: list[int], prefix: str) -> None:
        directory.mkdir()
        cert, key = loopback_certificate(directory)
        self.port = free_port()
        # Relative includes (snippets/…) are read from the main configuration's folder.
        shutil.copytree(DEPLOY / "snippets", directory / "snippets")
        locations = {"include snippets/localai-at-root.conf;": "include snippets/localai-at-ai.conf;"}
        site = _replaced(
            (DEPLOY / "conf.d" / "localai.conf").read_text(),
            {
                "server 127.0.0.1:8001;": f"server 127.0.0.1:{web_ports[0]};",
                "server 127.0.0.1:8002;": f"server 127.0.0.1:{web_ports[1]};",
                "listen 80;": f"listen 127.0.0.1:{free_port()};",
                "listen 443 ssl http2;": f"listen 127.0.0.1:{self.port} ssl http2;",
                "listen [::]:80;": "",
                "listen [::]:443 ssl http2;": "",
                "/etc/ssl/localai/fullchain.pem": str(cert),
                "/etc/ssl/localai/privkey.pem": str(key),
                **(locations if prefix else {}),
            },
        )
        (directory / "localai.conf").write_text(site)
        temp_paths = "\n".join(
            f"    {kind}_temp_path {directory / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = directory / "nginx.conf"
        config.write_text(
            f"""daemon off;
user {pwd.getpwuid(os.geteuid()).pw_name};
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {directory / "access.log"};
{temp_paths}
    include localai.conf;
}}
"""
        )
        self.log_path = directory / "nginx.log"
        checked = subprocess.run(
            ["nginx", "-t", "-c", str(config), "-e", str(directory / "error.log")],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(config), "-e", str(directory / "error.log")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.origin = f"https://127.0.0.1:{self.port}"
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified)
        )
        wait_until_started(
            self.proc,
            lambda: opener.open(f"{self.origin}{prefix}/healthz", timeout=5).status == 200,
            what="nginx to pass /healthz on to the app",
            log=directory / "error.log",
            ignoring=(OSError,),
        )


@dataclass
class Deployment:
    origin: str  # https://127.0.0.1:<nginx's port>
    prefix: str  # "" or SUB_PATH
    logs: list[Path]

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs if p.exists()
        )


@pytest.fixture(params=["", SUB_PATH], ids=["at the root", "under /ai/"])
def deployment(request, transactional_db, local_model, tmp_path):
    prefix = request.param
    env = {
        "LOCALAI_URL_PATH": prefix,
        "BEHIND_PROXY": "1",
        "TRUSTED_PROXIES": "127.0.0.1",
        "SECURE_COOKIES": "1",
        "CHAT_MAX_TOKENS": str(REPLY_TOKENS),
        "CHAT_SAVE_INTERVAL_MS": "200",
    }
    # Started side by side, each waiting for its own process to be ready.
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(WorkerProcess, tmp_path / "worker-local.log", "local", **env),
            pool.submit(WorkerProcess, tmp_path / "worker-other.log", "cloud,downloads,exports", **env),
            pool.submit(WebProcess, tmp_path / "web-1.log", **env),
            pool.submit(WebProcess, tmp_path / "web-2.log", **env),
        ]
    started: list[LoggedProcess] = [future.result() for future in futures if future.exception() is None]
    try:
        for future in futures:
            future.result()  # one that did not start fails the test; the others are stopped below
        webs = [process for process in started if isinstance(process, WebProcess)]
        nginx = Nginx(tmp_path / "nginx", web_ports=[web.port for web in webs], prefix=prefix)
        started.append(nginx)
        logs = [p.log_path for p in started] + [tmp_path / "nginx" / "error.log"]
        yield Deployment(origin=nginx.origin, prefix=prefix, logs=logs)
    finally:
        with ThreadPoolExecutor(len(started) or 1) as pool:  # each may take seconds to end gently
            list(pool.map(LoggedProcess.stop, started))


@dataclass
class Chromium:
    context: BrowserContext
    problems: list[str]  # what a person would see break: failed loads, code the policy blocked

    def note(self, problem: str) -> None:
        self.problems.append(problem)

    def request_failed(self, request: Request) -> None:
        # A link that downloads a file ends its navigation there: Chromium reports it aborted.
        if not (request.is_navigation_request() and request.failure == "net::ERR_ABORTED"):
            self.note(f"failed {request.url}: {request.failure}")


@pytest.fixture
def chromium(deployment, monkeypatch):
    # Playwright's sync API marks an event loop as running, which Django takes for async code;
    # the children are started already, so this reaches the test's own process only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, accept_downloads=True)
        context.set_default_timeout(20_000)
        watched = Chromium(context, [])
        context.add_init_script(REPORT_CSP_VIOLATIONS_JS)
        context.expose_function("reportCspViolation", lambda seen: watched.note(seen))
        context.on(
            "response", lambda r: r.status >= 400 and watched.note(f"{r.status} {r.request.method} {r.url}")
        )
        context.on("requestfailed", watched.request_failed)
        yield watched
        context.close()
        browser.close()


def _subscribed_processes(conversation) -> int:
    """How many web processes hold a socket of the conversation: each subscribes its group once."""
    channel, _ = redis_pubsub_message(conversation.group_name, {})
    return dict(redis.Redis.from_url(settings.REDIS_URL).pubsub_numsub(channel)).get(channel.encode(), 0)


def _open_on_the_other_process(page: Page, url: str, conversation) -> None:
    """Opens ``url``, again until its socket is held by the web process that does not hold the
    first page's (nginx sends each request to either)."""
    for _ in range(12):
        page.goto(url)
        try:
            wait_until(lambda: _subscribed_processes(conversation) == 2, timeout=3, what="two processes")
        except AssertionError:
            continue
        return
    raise AssertionError("nginx never sent the second page's socket to the other web process")


def test_a_person_uses_the_app_through_nginx(deployment, chromium, admin, make_conversation):
    url, prefix = deployment.url, deployment.prefix
    context = chromium.context
    streamed: list[dict] = []
    socket_urls: list[str] = []

    def watch_sockets(socket):
        socket_urls.append(socket.url)
        socket.on("framereceived", lambda frame: streamed.append(json.loads(frame)))

    # Signing in: the visitor is sent to the sign-in page under the prefix, and back.
    page = context.new_page()
    page.on("websocket", watch_sockets)
    response = page.goto(f"{url}/")
    assert page.url == f"{url}/accounts/login/?next={prefix}/"
    hsts = [h for h in response.headers_array() if h["name"].lower() == "strict-transport-security"]
    assert [h["value"] for h in hsts] == ["max-age=31536000"], "HSTS once, from nginx"
    page.fill("input[name=login]", admin.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{url}/")
    session = next(c for c in context.cookies() if c["name"] == "sessionid")
    assert session["secure"] and session["httpOnly"] and session["path"] == (prefix or "/")
    expect(page.locator("link[rel=stylesheet]")).to_have_attribute("href", re.compile(rf"^{prefix}/static/"))

    # Two pages of one conversation, their sockets on different web processes.
    conversation = make_conversation(admin, title="Through the proxy")
    conversation_url = f"{url}/c/{conversation.pk}/"
    page.goto(conversation_url)
    wait_until(lambda: _subscribed_processes(conversation) == 1, what="the first page's socket")
    other = context.new_page()
    _open_on_the_other_process(other, conversation_url, conversation)

    # A streamed reply, shown growing in both; Stop in the other page ends it in this one.
    page.fill("#composer-input", LONG_PROMPT)
    page.press("#composer-input", "Enter")
    reply, reply_there = last_reply(page), last_reply(other)
    expect(reply).to_have_attribute("data-status", "streaming", timeout=REPLY_TIMEOUT_MS)
    wait_until(
        lambda: len(reply_there.locator(".message-body").text_content()) > 40,
        what="the reply to grow in the other page",
        timeout=REPLY_TIMEOUT_MS / 1000,
        sleep=lambda seconds: other.wait_for_timeout(seconds * 1000),
        details=deployment.log_tails,
    )
    other.click("#stop-button")
    expect(reply).to_have_class(re.compile(r"\bstatus-stopped\b"))
    expect(reply_there).to_have_class(re.compile(r"\bstatus-stopped\b"))
    saved = Message.objects.get(conversation=conversation, role=Role.ASSISTANT)
    assert saved.status == MessageStatus.STOPPED and 0 < saved.completion_tokens < REPLY_TOKENS
    assert sum(frame["type"] == "delta" for frame in streamed) >= 3, "the reply came in pieces, live"
    assert socket_urls and all(
        s == f"{deployment.origin.replace('https', 'wss')}{prefix}/ws/chat/{conversation.pk}/"
        for s in socket_urls
    )
    other.close()

    # An upload larger than nginx lets through unless told.
    page.set_input_files(
        "#attach-input",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"dragon\n" * (UPLOAD_BYTES // 7)}],
    )
    expect(page.locator(".attachment-chip[data-state=stored]")).to_have_count(1, timeout=60_000)
    assert Upload.objects.get(owner=admin).size >= UPLOAD_BYTES - 7

    # The data download, built by the other worker, fetched through the proxy.
    page.goto(f"{url}/settings/privacy/")
    page.get_by_role("button", name="Prepare a new download").click()
    link = page.get_by_role("link", name=re.compile(r"^Download \("))
    expect(link).to_be_visible(timeout=60_000)
    assert link.get_attribute("href").startswith(f"{prefix}/settings/")
    with page.expect_download() as started:
        link.click()
    with zipfile.ZipFile(started.value.path()) as archive:
        assert json.loads(archive.read("manifest.json"))["subject"] == admin.email
        assert [c["title"] for c in json.loads(archive.read("conversations.json"))] == ["Through the proxy"]

    # The admin, and the API with a personal key.
    page.goto(f"{url}/admin/")
    expect(page.locator("#site-name")).to_have_text("LocalAI administration")
    key = api_key_create(user=admin, name="script").secret
    answer = context.request.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert answer.status == 200, answer.text()
    assert conversation.model in [model["id"] for model in answer.json()["data"]]

    if prefix:  # nothing of the app is reached outside its prefix
        outside = context.request.get(f"{deployment.origin}/accounts/login/")
        assert outside.status == 404
    assert chromium.problems == [], "\n".join(chromium.problems) + "\n" + deployment.log_tails()

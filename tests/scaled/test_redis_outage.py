"""Redis stopped and started again under a running scaled deployment.

Everything the person talks to runs as in docker-compose: a `localai serve` web process
(daphne) and a `localai worker`, both on a Redis of this test's own (killed, then started
again on the same port), and the test's PostgreSQL. The test is the person's browser:
HTTP with cookies and CSRF tokens, and the chat socket.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
import redis
from django.utils.html import escape
from websockets.sync.client import connect as websocket_connect

from accounts.models import User
from chat.models import ACTIVE_STATUSES, Message, MessageStatus, Role
from chat.services.replies import QUEUE_UNREACHABLE
from tests.conftest import PASSWORD
from tests.scaled.conftest import WebProcess, WorkerProcess
from tests.servers import free_port
from tests.waiting import wait_until, wait_until_started

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]

FINAL = {"done", "stopped", "failed"}


class RedisServer:
    """A real redis-server on a port of its own, with nothing kept on disk."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until_started(
            self.proc,
            client.ping,
            what="redis-server to answer a ping",
            timeout=20,
            log=self.log_path,
            ignoring=(redis.ConnectionError,),
        )

    def kill(self) -> None:
        """Gone at once, the way a crashed or stopped container goes."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the test looks at the 302 itself


class Browser:
    """Cookies and CSRF tokens, redirects not followed: a person's browser, from the test."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects
        )

    def _open(self, request: urllib.request.Request) -> tuple[int, str, str]:
        try:
            with self._opener.open(request, timeout=30) as response:
                return response.status, response.headers.get("Location", ""), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location", ""), exc.read().decode(errors="replace")
        except OSError:  # not listening yet
            return 0, "", ""

    def get(self, path: str) -> tuple[int, str, str]:
        return self._open(urllib.request.Request(self.base_url + path, headers={"Accept": "text/html"}))

    def post(self, path: str, data: dict, *, form_page: str) -> tuple[int, str, str]:
        """Submit the form on ``form_page`` (read first, for its CSRF token) to ``path``."""
        status, _, page = self.get(form_page)
        assert status == 200, f"{form_page} answered {status}"
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **data}).encode()
        return self._open(urllib.request.Request(self.base_url + path, data=body, method="POST"))

    def cookie(self, name: str) -> str:
        return next(cookie.value for cookie in self.cookies if cookie.name == name)


class LiveSocket:
    """The chat socket, applying frames the way chat.js does."""

    def __init__(self, browser: Browser, conversation_id) -> None:
        self.ws = websocket_connect(
            f"ws://127.0.0.1:{urllib.parse.urlsplit(browser.base_url).port}/ws/chat/{conversation_id}/",
            origin=browser.base_url,
            additional_headers={"Cookie": f"sessionid={browser.cookie('sessionid')}"},
            proxy=None,
            legacy=True,
        )
        self.texts: dict[int, str] = {}
        self.statuses: dict[int, str] = {}

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def receive_until(self, predicate, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if frame["type"] == "delta":
                current = self.texts.get(frame["id"], "")
                assert frame["offset"] <= len(current.encode("utf-16-le")) // 2, "a gap before a delta"
                overlap = len(current.encode("utf-16-le")) // 2 - frame["offset"]
                piece = frame["text"].encode("utf-16-le")[overlap * 2 :].decode("utf-16-le")
                self.texts[frame["id"]] = current + piece
            for message in [frame["message"]] if frame["type"] == "message" else frame.get("messages", []):
                self.statuses[message["id"]] = message["status"]
                if message["status"] in FINAL:
                    self.texts[message["id"]] = message["content"]
            if predicate(frame):
                return frame

    def close(self) -> None:
        self.ws.close()


def log_tails(logs: list[Path]) -> str:
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in logs)


@pytest.fixture
def deployment(transactional_db, local_model, tmp_path):
    """Redis, a worker and a web process, all on this test's own Redis."""
    redis_server = RedisServer(tmp_path / "redis.log")
    env = {"REDIS_URL": redis_server.url, "CHAT_SAVE_INTERVAL_MS": "200", "CHAT_MAX_TOKENS": "600"}
    worker = web = None
    try:
        worker = WorkerProcess(tmp_path / "worker.log", **env)
        web = WebProcess(tmp_path / "web.log", **env)
        yield redis_server, worker, web
    finally:
        for process in (web, worker):
            if process is not None:
                process.stop()
        redis_server.stop()


def _login(web: WebProcess, email: str) -> tuple[Browser, int, str]:
    browser = Browser(web.url)
    status, location, _ = browser.post(
        "/accounts/login/", {"login": email, "password": PASSWORD}, form_page="/accounts/login/"
    )
    return browser, status, location


def test_redis_stopped_and_started_again_gives_clear_errors_and_loses_nothing(
    deployment, admin, user, conversation
):
    redis_server, worker, web = deployment
    logs = [worker.log_path, web.log_path]
    page = f"/c/{conversation.pk}/"
    browser, status, _ = _login(web, user.email)
    assert status == 302
    socket = LiveSocket(browser, conversation.pk)

    # Redis up: a long reply streams to the socket.
    socket.send({"type": "send", "content": "Write a very long story about a dragon."})
    delta = socket.receive_until(lambda f: f["type"] == "delta" and f["offset"] > 0)
    first_id = delta["id"]
    shown_before = socket.texts[first_id]

    redis_server.kill()

    # The conversation opens from the database, mid-reply; Stop is recorded there.
    status, _, html = browser.get(page)
    assert status == 200 and 'data-status="streaming"' in html
    status, location, _ = browser.post(f"{page}stop/", {}, form_page=page)
    assert (status, location) == (302, page)
    assert Message.objects.get(pk=first_id).stop_requested_at is not None

    # The worker went on writing and saving to the database; nothing shown was lost.
    first = wait_until(
        lambda: Message.objects.filter(pk=first_id).exclude(status__in=ACTIVE_STATUSES).first(),
        timeout=180,
        every=0.2,
        what="the first reply to finish",
        details=lambda: log_tails(logs),
    )
    assert first.status in {MessageStatus.DONE, MessageStatus.STOPPED}, first.error
    assert first.content.startswith(shown_before) and len(first.content) > len(shown_before)
    status, _, html = browser.get(page)
    assert status == 200 and f'data-text="{escape(first.content)}"' in html

    # Sending: a clear error at once, and a failed reply rather than one queued forever.
    socket.send({"type": "send", "content": "Are you still there?"})
    error = socket.receive_until(lambda f: f["type"] == "error", timeout=30)
    assert error == {"type": "error", "code": "queue_unreachable", "error": QUEUE_UNREACHABLE}
    unqueued = Message.objects.filter(conversation=conversation, role=Role.ASSISTANT).latest("id")
    assert (unqueued.status, unqueued.error) == (MessageStatus.FAILED, QUEUE_UNREACHABLE)
    assert socket.statuses[unqueued.pk] == "failed"
    socket.send({"type": "sync", "messages": [first_id, unqueued.pk]})
    sync = socket.receive_until(lambda f: f["type"] == "sync", timeout=30)
    assert {m["id"]: m["status"] for m in sync["messages"]} == {
        first_id: first.status,
        unqueued.pk: "failed",
    }
    assert browser.get(page)[0] == 200 and escape(QUEUE_UNREACHABLE) in browser.get(page)[2]

    # Signing in and signing up still work (their rate limits are skipped, not a 500).
    _, status, location = _login(web, user.email)
    assert (status, location) == (302, "/")
    newcomer = Browser(web.url)
    status, location, _ = newcomer.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD, "minimum_age": "on"},
        form_page="/accounts/signup/",
    )
    assert (status, location) == (302, "/")
    assert User.objects.filter(email="new@example.com").exists()
    assert newcomer.get("/")[0] == 200  # signed in: sessions live in the database

    # Redis back on the same port: the worker takes replies again, and the open socket
    # gets them live.
    redis_server.start()
    wait_until(
        lambda: Browser(web.url).get("/readyz")[0] == 200,
        timeout=90,
        every=0.2,
        what="/readyz to answer 200 again",
        details=lambda: log_tails(logs),
    )
    socket.send({"type": "send", "content": "Name three rivers."})
    final = socket.receive_until(
        lambda f: f["type"] == "message" and f["message"]["id"] > unqueued.pk
        and f["message"]["role"] == "assistant" and f["message"]["status"] in FINAL
    )["message"]  # fmt: skip
    assert final["status"] == "done", final["error"]
    assert socket.texts[final["id"]] == final["content"] != ""
    socket.close()

    messages = list(conversation.messages.order_by("id").values_list("role", "status", "content"))
    assert messages == [
        ("user", "done", "Write a very long story about a dragon."),
        ("assistant", first.status, first.content),
        ("user", "done", "Are you still there?"),
        ("assistant", "failed", ""),
        ("user", "done", "Name three rivers."),
        ("assistant", "done", final["content"]),
    ]

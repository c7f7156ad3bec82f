"""deploy/Caddyfile and deploy/Caddyfile.subpath, run by the real Caddy (Debian's package) in front
of two `localai serve` processes on loopback, over HTTPS from Caddy's own local authority."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.chat.socket_client import session_cookie_for
from tests.servers import free_port
from tests.waiting import wait_until_started

from .conftest import LoggedProcess, WebProcess

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HSTS = "max-age=31536000"
# The app's side of "Deploying for a team": believe the proxy on loopback, HTTPS only.
APP_BEHIND_CADDY = {
    "BEHIND_PROXY": "1",
    "TRUSTED_PROXIES": "127.0.0.1,::1",
    "ALLOWED_HOSTS": "localhost",
    "SECURE_COOKIES": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
}


class CaddyProcess(LoggedProcess):
    """``caddy run`` with one of the shipped Caddyfiles for the site ``localhost``: Caddy then
    issues the certificate from its local authority, which ``tls`` trusts."""

    def __init__(
        self, folder: Path, caddyfile: str, upstreams: list[WebProcess], *, prefix: str = ""
    ) -> None:
        if shutil.which("caddy") is None:
            pytest.fail("caddy is missing: scripts/test-prerequisites.sh installs it")
        self.port = free_port()
        self.origin = f"https://localhost:{self.port}"
        # Only what differs on a test machine: ports of its own, nothing written outside the
        # folder, no change to the system's trusted certificates.
        wrapper = folder / "Caddyfile"
        wrapper.write_text(
            "{\n"
            "\tadmin off\n"
            "\tskip_install_trust\n"
            f"\thttp_port {free_port()}\n"
            f"\thttps_port {self.port}\n"
            f"\tstorage file_system {folder / 'data'}\n"
            "}\n"
            f"import {DEPLOY / caddyfile}\n"
        )
        self.log_path = folder / "caddy.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["caddy", "run", "--config", str(wrapper), "--adapter", "caddyfile"],
            env={
                **os.environ,
                "HOME": str(folder),
                "XDG_CONFIG_HOME": str(folder / "config"),
                "XDG_DATA_HOME": str(folder / "data"),
                "LOCALAI_SITE": "localhost",
                "LOCALAI_UPSTREAMS": " ".join(f"127.0.0.1:{web.port}" for web in upstreams),
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        root = folder / "data" / "pki" / "authorities" / "local" / "root.crt"
        try:
            self.tls = wait_until_started(
                self.proc,
                lambda: self._serving(root, f"{prefix}/healthz"),
                what="Caddy to serve HTTPS",
                log=self.log_path,
                ignoring=(OSError,),
            )
        except AssertionError:
            self.stop()
            raise

    def _serving(self, root: Path, probe: str) -> ssl.SSLContext | None:
        if not root.exists():
            return None
        context = ssl.create_default_context(cafile=str(root))
        urllib.request.urlopen(f"{self.origin}{probe}", context=context, timeout=5)
        return context

    def get(self, path: str, **headers: str) -> tuple[int, dict, str]:
        return self._fetch(urllib.request.Request(f"{self.origin}{path}", headers=headers))

    def post(self, path: str, body: bytes) -> tuple[int, dict, str]:
        return self._fetch(urllib.request.Request(f"{self.origin}{path}", data=body, method="POST"))

    def status_before_the_body(self, path: str, length: int) -> int:
        """The answer to a POST that announces ``length`` bytes, before any of them is sent."""
        connection = http.client.HTTPSConnection("localhost", self.port, context=self.tls, timeout=30)
        try:
            connection.putrequest("POST", path)
            connection.putheader("Content-Length", str(length))
            connection.endheaders()
            return connection.getresponse().status
        finally:
            connection.close()

    def _fetch(self, request: urllib.request.Request) -> tuple[int, dict, str]:
        """Status, headers (each name: every value) and body, redirects not followed."""
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.tls), _NoRedirects, urllib.request.ProxyHandler({})
        )
        try:
            response = opener.open(request, timeout=30)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            headers = {name: response.headers.get_all(name) for name in response.headers}
            return response.status, headers, response.read().decode(errors="replace")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def web_processes(transactional_db, local_model, tmp_path, request):
    env = {**APP_BEHIND_CADDY, **getattr(request, "param", {})}
    started = [WebProcess(tmp_path / f"web-{n}.log", **env) for n in (1, 2)]
    yield started
    for process in started:
        process.stop()


async def _sync_over_socket(caddy: CaddyProcess, path: str, cookie: bytes) -> dict:
    async with websockets.connect(
        f"wss://localhost:{caddy.port}{path}",
        ssl=caddy.tls,
        origin=caddy.origin,
        additional_headers={"Cookie": cookie.decode()},
        open_timeout=10,
    ) as socket:
        await socket.send(json.dumps({"type": "sync", "messages": []}))
        return json.loads(await asyncio.wait_for(socket.recv(), timeout=10))


def _body_of(url: str, **headers: str) -> bytes:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        return error.read()


def _header_values(headers: dict, name: str) -> list[str]:
    return [value for key, values in headers.items() if key.lower() == name.lower() for value in values]


def test_caddy_at_the_root_serves_https_pages_sockets_and_uploads_and_drops_forged_headers(
    web_processes, tmp_path, conversation
):
    caddy = CaddyProcess(tmp_path, "Caddyfile", web_processes)
    try:
        # The app knows the page came over HTTPS (no redirect to it), and says so once.
        status, headers, page = caddy.get("/accounts/login/")
        assert status == 200, page[:300]
        assert _header_values(headers, "Strict-Transport-Security") == [HSTS]
        assert all("Secure" in cookie for cookie in _header_values(headers, "Set-Cookie"))

        # A client naming another address gets nowhere: Caddy replaces the header, so the
        # app still counts this machine (and tells it which part is down); the same header
        # straight from a trusted peer is believed.
        _, _, through_caddy = caddy.get("/readyz", **{"X-Forwarded-For": "203.0.113.7"})
        assert "database" in json.loads(through_caddy)
        direct = _body_of(f"{web_processes[0].url}/readyz", **{"X-Forwarded-For": "203.0.113.7"})
        assert "database" not in json.loads(direct)

        # Uploads up to the app's limit reach it (which refuses this one: no CSRF token);
        # larger bodies stop at Caddy.
        assert caddy.post("/files/new/", b"x" * (25 * 1024 * 1024))[0] == 403
        assert caddy.status_before_the_body("/files/new/", 31 * 1000 * 1000) == 413

        frame = asyncio.run(
            _sync_over_socket(caddy, f"/ws/chat/{conversation.pk}/", session_cookie_for(conversation.owner))
        )
        assert frame == {"type": "sync", "messages": []}

        # One web process stops: Caddy sends everything to the other.
        web_processes[0].stop()
        assert [caddy.get("/accounts/login/")[0] for _ in range(6)] == [200] * 6
    finally:
        caddy.stop()


@pytest.mark.parametrize("web_processes", [{"LOCALAI_URL_PATH": "/ai"}], indirect=True)
def test_caddy_under_a_sub_path_passes_the_path_whole_and_keeps_the_rest_of_the_site(
    web_processes, tmp_path, conversation
):
    caddy = CaddyProcess(tmp_path, "Caddyfile.subpath", web_processes, prefix="/ai")
    try:
        status, headers, _ = caddy.get("/ai")
        assert (status, _header_values(headers, "Location")) == (301, ["/ai/"])

        status, headers, page = caddy.get("/ai/accounts/login/")
        assert status == 200, page[:300]
        assert 'action="/ai/accounts/login/"' in page and 'href="/ai/static/' in page
        assert _header_values(headers, "Strict-Transport-Security") == [HSTS]

        status, _, body = caddy.get("/elsewhere/")
        assert (status, body) == (404, "Not LocalAI")

        frame = asyncio.run(
            _sync_over_socket(
                caddy, f"/ai/ws/chat/{conversation.pk}/", session_cookie_for(conversation.owner)
            )
        )
        assert frame == {"type": "sync", "messages": []}
    finally:
        caddy.stop()

"""Real servers on loopback that tests talk to."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from models_hub.bundled import bundled_model_path
from tests.waiting import wait_until_started

API_KEY = "sk-test-0123456789abcdef"
LLAMA_ALIAS = "smollm2-loopback"


def loopback_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server's TLS context with ``loopback_certificate``, and the certificate file a client
    trusts through ``SSL_CERT_FILE``."""
    cert_path, key_path = loopback_certificate(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def loopback_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, written to ``folder``: the
    certificate's path and its key's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "loopback.crt", folder / "loopback.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` with the bundled model: a real OpenAI-compatible API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(bundled_model_path()),
                "--model_alias", LLAMA_ALIAS,
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--api_key", API_KEY,
                "--n_ctx", "4096",
                # One token per micro-batch: batched prompt evaluation with repacked weights
                # crashes on an AMX CPU if GCC 12 built llama.cpp without the Makefile's fix. The app's
                # runner finds that out by probing; this stand-in provider just avoids it.
                "--n_ubatch", "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until_started(
            self.proc, self._answers, what="llama_cpp.server to list its models", ignoring=(OSError,)
        )

    def _answers(self) -> bool:
        request = urllib.request.Request(
            f"{self.base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=2):
            return True

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


class MisbehavingProvider(ThreadingHTTPServer):
    """An OpenAI-style endpoint whose model names choose how it fails:
    ``rate-limited`` (429), ``server-error`` (500), ``slow`` (answers after 5 s),
    ``drops`` (streams two pieces, then cuts the connection), ``echo`` (streams the
    last user message's text back), anything else streams ``tokens`` pieces, one every
    ``interval`` seconds (``paced``). Each request's body is kept in ``requests``."""

    daemon_threads = True

    def __init__(self, *, interval: float = 0.0, tokens: int = 5) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.interval = interval
        self.tokens = tokens
        self.requests: list[dict] = []
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON; the fakes below speak through it."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Handler(_JsonHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        names = ["paced", "rate-limited", "server-error", "slow", "drops", "echo"]
        self._json(
            200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "test"} for n in names]}
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        model = body["model"]
        if model == "rate-limited":
            return self._json(429, {"error": {"message": "slow down", "type": "rate_limit"}})
        if model == "server-error":
            return self._json(500, {"error": {"message": "boom", "type": "server_error"}})
        if model == "slow":
            time.sleep(5)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if model == "echo":
            content = body["messages"][-1]["content"]  # text, or parts: text and images
            text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
            third = max(1, len(text) // 3)
            pieces = [text[i : i + third] for i in range(0, len(text), third)]
        else:
            pieces = [f"w{i} " for i in range(2 if model == "drops" else self.server.tokens)]
        count = len(pieces)
        for piece in pieces:
            chunk = {
                "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }  # fmt: skip
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if self.server.interval:
                time.sleep(self.server.interval)
        if model == "drops":
            self.wfile.write(b'data: {"id": "c1", "choi')  # cut mid-event
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        end = {
            "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }  # fmt: skip
        usage = {
            "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": count, "total_tokens": 7 + count},
        }  # fmt: skip
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


@dataclass
class HubFile:
    path: Path
    size: int
    sha256: str  # what the hub says the content's sha256 is
    commit: str
    key: str  # its name in storage
    git_oid: str = ""  # kept in git, not LFS: the hub serves it itself and knows no sha256


class HubServer(ThreadingHTTPServer):
    """A Hugging Face–style hub on loopback, answering the way huggingface.co does:

    ``HEAD|GET /<repo>/resolve/<revision>/<file>`` redirects to storage on another host
    name (``localhost`` instead of ``127.0.0.1``) with ``X-Linked-Etag`` (the sha256),
    ``X-Linked-Size`` and ``X-Repo-Commit``; storage serves the bytes with ``Range``
    support through ``sendfile``. ``/api/models/<repo>/tree/<revision>`` lists files.

    With ``tls`` (``loopback_tls``) it answers https.

    Knobs for failures: ``rate`` (bytes/s), ``token`` (gated: 401 without it),
    ``metadata_headers`` (False: a mirror that only has the tree API),
    ``drop_at`` (cut the connection once at each of these offsets), ``redirect_body``
    (a GET's redirect announces this many body bytes, sends 64 KiB of them, then stalls)."""

    daemon_threads = True

    def __init__(self, *, rate: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        port = self.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{port}"
        self.storage = f"{scheme}://localhost:{port}"
        self.rate = rate
        self.token: str | None = None
        self.metadata_headers = True
        self.drop_at: list[int] = []
        self.redirect_body = 0
        self.files: dict[tuple[str, str], HubFile] = {}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def add(
        self, repo: str, file: str, source: Path, *, sha256: str | None = None, in_git: bool = False
    ) -> HubFile:
        """Serve ``source`` as ``repo``'s ``file``; ``sha256`` overrides what the hub claims.
        ``in_git``: a small file kept in git, as huggingface.co serves one (no redirect, no
        sha256: its ETag and the tree's ``oid`` are its git blob id)."""
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            while block := handle.read(4 * 1024 * 1024):
                digest.update(block)
        commit = hashlib.sha1(f"{repo}/{file}".encode()).hexdigest()
        size = Path(source).stat().st_size
        git_oid = hashlib.sha1(b"blob %d\0" % size + Path(source).read_bytes()).hexdigest() if in_git else ""
        hub_file = HubFile(
            Path(source), size, sha256 or digest.hexdigest(), commit, key=commit[:16], git_oid=git_oid
        )
        self.files[(repo, file)] = hub_file
        return hub_file

    def by_key(self, key: str) -> HubFile | None:
        return next((f for f in self.files.values() if f.key == key), None)

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "host": handler.headers.get("Host", ""),
                    "range": handler.headers.get("Range"),
                    "authorization": handler.headers.get("Authorization"),
                }
            )

    def ranges_asked(self) -> list[str | None]:
        return [
            r["range"] for r in self.requests if r["method"] == "GET" and r["path"].startswith("/storage/")
        ]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self.server.record(self)
        self._resolve()

    def do_GET(self) -> None:
        self.server.record(self)
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/storage/"):
            self._serve(path.removeprefix("/storage/"))
        elif path.startswith("/api/models/"):
            self._tree(path.removeprefix("/api/models/"))
        else:
            self._resolve()

    def _resolve(self) -> None:
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.strip("/").split("/")]
        if len(parts) < 5 or parts[2] != "resolve":
            return self._empty(404)
        repo, file = f"{parts[0]}/{parts[1]}", "/".join(parts[4:])
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._empty(401, {"X-Error-Code": "GatedRepo"})
        hub_file = self.server.files.get((repo, file))
        if hub_file is None:
            return self._empty(404, {"X-Error-Code": "EntryNotFound"})
        if hub_file.git_oid:  # served from git itself: the content at once, or its headers
            if self.command == "GET":
                return self._serve(hub_file.key)
            headers = {"ETag": f'"{hub_file.git_oid}"', "X-Repo-Commit": hub_file.commit}
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(hub_file.size))
            return self.end_headers()
        headers = {
            "Location": f"{self.server.storage}/storage/{hub_file.key}",
            "ETag": f'"{hub_file.sha256}"',
        }
        if self.server.metadata_headers:
            headers |= {
                "X-Linked-Etag": f'"{hub_file.sha256}"',
                "X-Linked-Size": str(hub_file.size),
                "X-Repo-Commit": hub_file.commit,
            }
        if self.command == "GET" and self.server.redirect_body:
            self.send_response(302)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(self.server.redirect_body))
            self.end_headers()
            self.wfile.write(b"x" * 64 * 1024)
            return
        self._empty(302, headers)

    def _tree(self, rest: str) -> None:
        parts = [urllib.parse.unquote(p) for p in rest.strip("/").split("/")]
        repo, folder = f"{parts[0]}/{parts[1]}", "/".join(parts[4:])
        entries = [
            {"type": "file", "path": file, "size": f.size, "oid": f.git_oid}
            if f.git_oid
            else {
                "type": "file",
                "path": file,
                "size": f.size,
                "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134},
            }
            for (r, file), f in self.server.files.items()
            if r == repo and file.rpartition("/")[0] == folder
        ]
        body = json.dumps(entries).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, key: str) -> None:
        hub_file = self.server.by_key(key)
        if hub_file is None:
            return self._empty(404)
        size, start = hub_file.size, 0
        asked = self.headers.get("Range", "")
        if asked.startswith("bytes=") and asked.endswith("-"):
            start = int(asked[6:-1])
            if start >= size:
                return self._empty(416, {"Content-Range": f"bytes */{size}"})
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        end = size
        drops = [at for at in self.server.drop_at if start < at < size]
        if drops:
            end = drops[0]
            self.server.drop_at.remove(end)
        with open(hub_file.path, "rb") as handle:
            self._send(handle.fileno(), start, end)
        if end < size:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _send(self, fd: int, offset: int, end: int) -> None:
        rate = self.server.rate
        step = 64 * 1024 if rate else 8 * 1024 * 1024
        began = time.monotonic()
        sent = 0
        try:
            while offset < end:
                count = os.sendfile(self.connection.fileno(), fd, offset, min(step, end - offset))
                if count == 0:
                    break
                offset += count
                sent += count
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (a cancelled download)


class FakeGoogle(ThreadingHTTPServer):
    """Google's OAuth endpoints as allauth's Google provider calls them once a person has
    agreed on Google's page: ``POST /token`` trades the code for an access token, ``GET
    /userinfo`` answers with ``profile``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GoogleHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.profile: dict[str, object] = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _GoogleHandler(BaseHTTPRequestHandler):
    server: FakeGoogle

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._json({"access_token": "google-access-token", "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self) -> None:
        self._json(self.server.profile)


class FakeTranscriber(ThreadingHTTPServer):
    """A cloud provider's ``POST /v1/audio/transcriptions`` (OpenAI's form: a multipart body
    with ``model`` and ``file``) that answers ``text``, or the error ``status`` names (401, 429).
    Each request is kept in ``requests``: path, API key, model, file name and the audio."""

    daemon_threads = True
    ERRORS = {
        401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
        429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    }

    def __init__(self, *, text: str = "Hello from the cloud.", status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _TranscriberHandler)
        self.text = text
        self.status = status
        self.requests: list[dict] = []
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _TranscriberHandler(_JsonHandler):
    server: FakeTranscriber

    def do_POST(self) -> None:
        from email.parser import BytesParser
        from email.policy import HTTP

        body = self.rfile.read(int(self.headers["Content-Length"]))
        form = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
        self.server.requests.append(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "model": parts["model"].get_content().strip(),
                "file_name": parts["file"].get_filename(),
                "audio": parts["file"].get_payload(decode=True),
            }
        )
        if self.path != "/v1/audio/transcriptions":
            return self._json(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
        if self.server.status in FakeTranscriber.ERRORS:
            message, kind, code = FakeTranscriber.ERRORS[self.server.status]
            return self._json(self.server.status, {"error": {"message": message, "type": kind, "code": code}})
        self._json(200, {"text": self.server.text})


IMAGE_MODELS = ["gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini", "gpt-4o-mini"]
GEMINI_IMAGE_MODEL = "gemini-2.5-flash-image"


def png_bytes(width: int, height: int, colour: str = "teal") -> bytes:
    """A real PNG, as an image API sends one (with a text chunk that says where it came from)."""
    from io import BytesIO

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "loopback image provider")
    out = BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG", pnginfo=info)
    return out.getvalue()


class ImageProviderFake(ThreadingHTTPServer):
    """OpenAI's Images API (``/v1/images/generations`` and ``/v1/images/edits``, the GPT
    Image models) and Gemini's ``generate_content`` with image output, answering real PNGs
    made by Pillow. The prompt chooses how it fails: ``refuse`` (the content policy),
    ``busy`` (429), ``slow`` (answers after ``slow_s``), ``broken`` (cuts the body off),
    ``garbage`` (base64 that is no image). Each request is kept in ``requests``:
    ``{"path", "fields", "files"}`` (an edit's images by part name, their bytes)."""

    daemon_threads = True

    def __init__(self, *, slow_s: float = 3.0) -> None:
        super().__init__(("127.0.0.1", 0), _ImageHandler)
        self.slow_s = slow_s
        self.requests: list[dict] = []
        root = f"http://127.0.0.1:{self.server_address[1]}"
        self.base_url = f"{root}/v1"
        self.gemini_base_url = f"{root}/v1beta/openai/"  # the preset's shape; google-genai drops the tail
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename():
            files.setdefault(name.removesuffix("[]"), []).append(data)
        else:
            fields[name] = data.decode()
    return fields, files


class _ImageHandler(_JsonHandler):
    protocol_version = "HTTP/1.1"
    server: ImageProviderFake

    def _authorised(self) -> bool:
        given = self.headers.get("x-goog-api-key") or self.headers.get("Authorization", "").removeprefix(
            "Bearer "
        )
        if given != API_KEY:
            self._json(401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised():
            return
        names = ["models/" + GEMINI_IMAGE_MODEL] if self.path.startswith("/v1beta/") else IMAGE_MODELS
        self._json(
            200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "t"} for n in names]}
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self._authorised():
            return
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            fields, files = _multipart(content_type, body)
        else:
            fields, files = json.loads(body or b"{}"), {}
        gemini = ":generateContent" in self.path
        if gemini:
            parts = fields["contents"][-1]["parts"]
            prompt = " ".join(part.get("text", "") for part in parts)
            # google-genai writes bytes as URL-safe base64 without padding.
            data = [p["inlineData"]["data"] for p in parts if "inlineData" in p]
            files = {"image": [base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)) for d in data]}
        else:
            prompt = fields.get("prompt", "")
        self.server.requests.append(
            {
                "path": self.path,
                "fields": fields,
                "files": files,
            }
        )
        if "slow" in prompt:
            time.sleep(self.server.slow_s)
        if "busy" in prompt:
            return self._json(
                429,
                {"error": {"code": 429, "message": "Rate limit reached.", "status": "RESOURCE_EXHAUSTED"}},
            )
        if "broken" in prompt:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b'{"created": 1, "data": [{"b64_json": "iVBOR')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        if gemini:
            return self._gemini(prompt, fields)
        return self._openai(prompt, fields, files)

    def _made(self, prompt: str, width: int, height: int) -> str:
        data = b"this is not an image at all" if "garbage" in prompt else png_bytes(width, height)
        return base64.b64encode(data).decode()

    def _openai(self, prompt: str, fields: dict, files: dict[str, list[bytes]]) -> None:
        if "refuse" in prompt:
            error = {
                "message": "Your request was rejected as a result of our safety system.",
                "type": "image_generation_user_error",
                "code": "moderation_blocked",
            }
            return self._json(400, {"error": error})
        width, height = (int(side) for side in str(fields.get("size", "1024x1024")).split("x"))
        count = int(fields.get("n", 1))
        items = [{"b64_json": self._made(prompt, width, height)} for _ in range(count)]
        return self._json(200, {"created": int(time.time()), "data": items})

    def _gemini(self, prompt: str, fields: dict) -> None:
        if "refuse" in prompt:
            return self._json(
                200, {"candidates": [{"finishReason": "IMAGE_SAFETY", "content": {"parts": []}}]}
            )
        aspect = fields.get("generationConfig", {}).get("imageConfig", {}).get("aspectRatio", "1:1")
        across, down = (int(side) for side in aspect.split(":"))
        image = {"inlineData": {"mimeType": "image/png", "data": self._made(prompt, 64 * across, 64 * down)}}
        candidate = {"content": {"role": "model", "parts": [image]}, "finishReason": "STOP"}
        return self._json(200, {"candidates": [candidate], "modelVersion": GEMINI_IMAGE_MODEL})

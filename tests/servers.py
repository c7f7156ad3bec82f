"""Real servers on loopback that tests talk to."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from models_hub.bundled import bundled_model_path

API_KEY = "sk-test-0123456789abcdef"
LLAMA_ALIAS = "smollm2-loopback"


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
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            request = urllib.request.Request(
                f"{self.base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


class MisbehavingProvider(ThreadingHTTPServer):
    """An OpenAI-style endpoint whose model names choose how it fails:
    ``rate-limited`` (429), ``server-error`` (500), ``slow`` (answers after 5 s),
    ``drops`` (streams two pieces, then cuts the connection), ``echo`` (streams the
    last user message back), anything else streams ``tokens`` pieces, one every
    ``interval`` seconds (``paced``)."""

    daemon_threads = True

    def __init__(self, *, interval: float = 0.0, tokens: int = 5) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.interval = interval
        self.tokens = tokens
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        names = ["paced", "rate-limited", "server-error", "slow", "drops", "echo"]
        self._json(
            200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "test"} for n in names]}
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
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
            text = body["messages"][-1]["content"]
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

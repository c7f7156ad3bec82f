"""A GET straight through an ASGI application, as a server such as daphne hands it over."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator


@dataclass(frozen=True)
class AsgiAnswer:
    status: int
    headers: dict[str, list[str]]  # lower-case names: every value each was sent with
    body: str

    def header(self, name: str) -> str:
        (value,) = self.headers[name]
        return value


@async_to_sync
async def asgi_get(
    application, path: str, *, root_path: str = "", headers: tuple[tuple[bytes, bytes], ...] = ()
) -> AsgiAnswer:
    """GET ``path`` (the whole path, any prefix included) with ``root_path`` in the scope."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50123),
        "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(timeout=20)
    body = BytesIO()
    while True:
        message = await app.receive_output(timeout=20)
        body.write(message.get("body", b""))
        if not message.get("more_body"):
            break
    answer_headers: dict[str, list[str]] = {}
    for name, value in start["headers"]:
        answer_headers.setdefault(name.decode().lower(), []).append(value.decode())
    return AsgiAnswer(start["status"], answer_headers, body.getvalue().decode(errors="replace"))

"""A test client for the chat socket that applies frames the way chat.js does."""

from __future__ import annotations

import json

from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from localai_site.asgi import application

FINAL = {"done", "stopped", "failed"}


def session_cookie_for(user) -> bytes:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}".encode()


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ChatSocket:
    def __init__(self, conversation_id, cookie: bytes | None, origin: bytes = b"http://localhost") -> None:
        headers = [(b"host", b"localhost"), (b"origin", origin)]
        if cookie:
            headers.append((b"cookie", cookie))
        self.communicator = WebsocketCommunicator(
            application, f"/ws/chat/{conversation_id}/", headers=headers
        )
        self.texts: dict[int, str] = {}
        self.statuses: dict[int, str] = {}
        self.frames: list[dict] = []

    async def connect(self):
        return await self.communicator.connect(timeout=10)

    async def send(self, frame) -> None:
        if isinstance(frame, dict | list):
            await self.communicator.send_to(text_data=json.dumps(frame))
        elif isinstance(frame, bytes):
            await self.communicator.send_to(bytes_data=frame)
        else:
            await self.communicator.send_to(text_data=frame)

    async def receive(self, timeout: float = 60) -> dict:
        frame = await self.communicator.receive_json_from(timeout=timeout)
        self.frames.append(frame)
        self._apply(frame)
        return frame

    async def receive_until(self, predicate, timeout: float = 120) -> dict:
        while True:
            frame = await self.receive(timeout)
            if predicate(frame):
                return frame

    async def reply_finished(self, timeout: float = 120) -> dict:
        frame = await self.receive_until(
            lambda f: (
                f["type"] == "message"
                and f["message"]["role"] == "assistant"
                and f["message"]["status"] in FINAL
            ),
            timeout,
        )
        return frame["message"]

    def _apply(self, frame: dict) -> None:
        if frame["type"] == "message":
            self._upsert(frame["message"])
        elif frame["type"] == "sync":
            for message in frame["messages"]:
                self._upsert(message)
        elif frame["type"] == "delta":
            current = self.texts.get(frame["id"], "")
            assert frame["offset"] <= _utf16(current), f"gap before delta at {frame['offset']}"
            overlap = _utf16(current) - frame["offset"]
            piece = frame["text"].encode("utf-16-le")[overlap * 2 :].decode("utf-16-le")
            self.texts[frame["id"]] = current + piece

    def _upsert(self, message: dict) -> None:
        current = self.texts.get(message["id"], "")
        if message["status"] in FINAL or len(message["content"]) >= len(current):
            self.texts[message["id"]] = message["content"]
        self.statuses[message["id"]] = message["status"]

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(conversation_id, cookie: bytes) -> ChatSocket:
    socket = ChatSocket(conversation_id, cookie)
    connected, _ = await socket.connect()
    assert connected
    return socket

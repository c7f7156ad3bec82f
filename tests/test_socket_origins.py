"""A websocket opens only for a page of this site: the Origin a browser sends must be the
socket's own scheme, host and port (behind a trusted proxy, the ones it forwards)."""

import ipaddress

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from localai_site.asgi import application
from tests.chat.socket_client import session_cookie_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

PROXY = "10.0.0.5"
VISITOR = "203.0.113.9"


async def _opens(
    conversation, *, origin: str | None, scheme: str = "ws", peer: str = VISITOR, **headers
) -> bool:
    """Whether the chat socket opens for a signed-in person, the handshake arriving as a
    server hands it over: from ``peer``, over ``scheme``, with these headers."""
    cookie = await database_sync_to_async(session_cookie_for)(conversation.owner)
    sent = [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
    sent += [(b"cookie", cookie)] + ([(b"origin", origin.encode())] if origin else [])

    async def server(scope, receive, send):
        return await application({**scope, "scheme": scheme, "client": (peer, 50123)}, receive, send)

    socket = WebsocketCommunicator(server, f"/ws/chat/{conversation.pk}/", headers=sent)
    connected, _ = await socket.connect(timeout=10)
    if connected:
        await socket.disconnect()
    return connected


async def test_the_pages_own_origin_opens_the_socket(conversation):
    assert await _opens(conversation, origin="http://localhost:8000", Host="localhost:8000")
    assert await _opens(conversation, origin="https://localhost", scheme="wss", Host="localhost")


@pytest.mark.parametrize(
    ("origin", "scheme", "host"),
    [
        ("http://localhost:8000", "wss", "localhost"),  # plain HTTP driving the HTTPS site's socket
        ("http://localhost", "wss", "localhost"),
        ("https://localhost", "ws", "localhost"),
        ("http://localhost:9000", "ws", "localhost:8000"),  # another port: another site
        ("http://localhost", "ws", "localhost:8000"),
        ("http://evil.example", "ws", "localhost"),
        ("null", "ws", "localhost"),
        (None, "ws", "localhost"),
        ("http://evil.example", "ws", "evil.example"),  # a host not in ALLOWED_HOSTS (DNS rebinding)
    ],
)
async def test_another_origin_cannot_open_the_socket(conversation, origin, scheme, host):
    assert not await _opens(conversation, origin=origin, scheme=scheme, Host=host)


async def test_an_origin_in_csrf_trusted_origins_opens_the_socket(conversation, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.org"]
    assert await _opens(conversation, origin="https://chat.example.org", Host="localhost:8000")


@pytest.fixture
def behind_proxy(settings):
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(PROXY)]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    return settings


FORWARDED = {"Host": "web:8000", "X_Forwarded_Host": "chat.example.org", "X_Forwarded_Proto": "https"}


async def test_behind_the_proxy_the_scheme_and_host_it_forwards_count(conversation, behind_proxy):
    assert await _opens(conversation, origin="https://chat.example.org", peer=PROXY, **FORWARDED)
    assert not await _opens(conversation, origin="http://chat.example.org", peer=PROXY, **FORWARDED)
    assert not await _opens(conversation, origin="https://chat.example.org:8443", peer=PROXY, **FORWARDED)


async def test_forwarded_headers_from_anyone_but_the_proxy_count_for_nothing(conversation, behind_proxy):
    assert not await _opens(conversation, origin="https://chat.example.org", peer=VISITOR, **FORWARDED)
    behind_proxy.ALLOWED_HOSTS = ["chat.example.org", "web"]
    # The headers dropped, the socket is what the visitor reached: http://web:8000.
    assert not await _opens(conversation, origin="https://chat.example.org", peer=VISITOR, **FORWARDED)
    assert await _opens(conversation, origin="http://web:8000", peer=VISITOR, **FORWARDED)

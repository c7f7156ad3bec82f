"""Served under a sub-path (``LOCALAI_URL_PATH=/ai``, the proxy passing the path on whole):
pages, redirects, static files, cookies, the chat socket and the links in what it sends, all
through the real ASGI application, keep ``/ai`` in front of every URL they carry. The real
nginx in front, with Chromium: tests/scaled/test_nginx_proxy.py."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from chat.models import Message, Role
from chat.services import upload_save
from localai_site.asgi import application
from tests.asgi_client import asgi_get
from tests.chat.socket_client import session_cookie_for
from tests.files import uploaded

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "/ai"
# What LOCALAI_URL_PATH decides, read from the settings module as start-up reads it.
DERIVED = [
    "URL_PATH",
    "FORCE_SCRIPT_NAME",
    "STATIC_URL",
    "MEDIA_URL",
    "SESSION_COOKIE_PATH",
    "CSRF_COOKIE_PATH",
    "SECURE_REDIRECT_EXEMPT",
]


@pytest.fixture(scope="module")
def sub_path_settings(tmp_path_factory) -> dict:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json; from django.conf import settings; print(json.dumps({{n: getattr(settings, n) "
            f"for n in {DERIVED!r}}}))",
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "localai_site.settings",
            "LOCALAI_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "LOCALAI_URL_PATH": f"{PREFIX}/",  # as people write it, with the slash
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)


@pytest.fixture
def under_sub_path(settings, sub_path_settings):
    for name, value in sub_path_settings.items():
        setattr(settings, name, value)


def test_the_setting_puts_the_prefix_in_front_of_urls_and_cookies(sub_path_settings):
    assert sub_path_settings == {
        "URL_PATH": "/ai",
        "FORCE_SCRIPT_NAME": "/ai",
        "STATIC_URL": "/ai/static/",
        "MEDIA_URL": "/ai/media/",
        "SESSION_COOKIE_PATH": "/ai",
        "CSRF_COOKIE_PATH": "/ai",
        "SECURE_REDIRECT_EXEMPT": ["^(?:ai/)?healthz$", "^(?:ai/)?readyz$"],
    }


def _get(path: str, cookie: bytes = b"") -> tuple[int, dict[str, list[str]], str]:
    """A GET as the proxy passes it on (the prefix in the path) to the whole application;
    daphne's own ``root_path`` stays empty (no --root-path): the app knows its prefix itself."""
    headers = ((b"accept", b"text/html"), *(((b"cookie", cookie),) if cookie else ()))
    answer = asgi_get(application, path, headers=headers)
    return answer.status, answer.headers, answer.body


class _Paths(HTMLParser):
    """Every path a page points at: links, forms, scripts, styles, images, and the URLs its
    scripts read from data attributes (sockets, uploads, status polls)."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str]] = []  # (where, path)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name in ("href", "src", "action") or name.startswith("data-")) and value[0] == "/":
                self.found.append((f"<{tag} {name}>", value))


def _outside_the_prefix(page: str) -> tuple[int, list[tuple[str, str]]]:
    """How many paths the page holds, and those outside the prefix (the admin's "View site"
    link is the prefix itself, which nginx redirects to the prefix and its slash)."""
    parser = _Paths()
    parser.feed(page)
    inside = [
        (where, path) for where, path in parser.found if path == PREFIX or path.startswith(f"{PREFIX}/")
    ]
    return len(parser.found), [found for found in parser.found if found not in inside]


def test_a_visitor_is_sent_to_sign_in_under_the_prefix(under_sub_path):
    status, headers, _ = _get(f"{PREFIX}/")
    assert (status, headers["location"]) == (302, [f"{PREFIX}/accounts/login/?next={PREFIX}/"])

    status, headers, page = _get(f"{PREFIX}/accounts/login/")
    assert status == 200
    assert any(cookie.startswith("csrftoken=") and "Path=/ai" in cookie for cookie in headers["set-cookie"])
    count, outside = _outside_the_prefix(page)
    assert count and not outside, outside

    status, headers, _ = _get(f"{PREFIX}/static/css/app.css")
    assert (status, headers["content-type"]) == (200, ['text/css; charset="utf-8"'])
    assert _get(f"{PREFIX}/healthz")[0] == 200


def test_a_persons_pages_and_the_admin_link_under_the_prefix(under_sub_path, admin, make_conversation):
    conversation = make_conversation(admin, title="Under a prefix")
    cookie = session_cookie_for(admin)
    for path in ["/", f"/c/{conversation.pk}/", "/hub/", "/images/", "/settings/privacy/", "/admin/"]:
        status, _, page = _get(PREFIX + path, cookie)
        assert status == 200, path
        count, outside = _outside_the_prefix(page)
        assert count and not outside, f"{path} points outside {PREFIX}/: {outside}"
    _, _, page = _get(f"{PREFIX}/c/{conversation.pk}/", cookie)
    assert f'data-socket-path="{PREFIX}/ws/chat/{conversation.pk}/"' in page


@async_to_sync
async def _socket_sync(conversation, cookie: bytes, message_ids: list[int]) -> dict:
    socket = WebsocketCommunicator(
        application,
        f"{PREFIX}/ws/chat/{conversation.pk}/",
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)],
    )
    connected, _ = await socket.connect(timeout=10)
    assert connected, "the socket under the prefix did not open"
    await socket.send_json_to({"type": "sync", "messages": message_ids})
    while (frame := await socket.receive_json_from(timeout=20))["type"] != "sync":
        pass
    await socket.disconnect()
    return frame


def test_the_socket_opens_under_the_prefix_and_its_links_keep_it(under_sub_path, user, conversation):
    notes = upload_save(owner=user, conversation=conversation, file=uploaded("notes.txt"))
    message = Message.objects.create(conversation=conversation, role=Role.USER, content="Read this.")
    notes.message = message
    notes.save(update_fields=["message"])

    frame = _socket_sync(conversation, session_cookie_for(user), [message.pk])

    bubble = next(m for m in frame["messages"] if m["id"] == message.pk)["bubble"]
    assert f'href="{PREFIX}/files/{notes.pk}/"' in bubble

"""Both sockets against frames of any shape, failures inside a consumer, sessions that end
while a socket is open, and the per-socket rate limit (embedded mode, the real ASGI app)."""

import asyncio
import json
import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from redis import RedisError

from accounts.models import CrashReport, User
from chat import selectors, services
from localai_site.asgi import application
from localai_site.core import sockets
from tests.chat.socket_client import ChatSocket, open_socket, session_cookie_for
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

NOT_TEXT = [1, -2.5, True, [], {}, ["text"], {"text": "x"}]
UNSTORABLE = ["\x00", "a\x00b", "\ud800", "\udfff", "x\ud83d", "\udc00y", "\ud800\ud800"]
NOT_IDS = [0, -1, 2**63, -(2**63) - 1, 10**40, True, 1.5, "7", "\x00", [], {}, [1]]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def malformed_frames() -> list[str | bytes | dict]:
    """Frames no page sends: wrong types and unstorable text in every field, ids outside
    the database's range, keys that cannot be stored, deep nesting, not JSON at all."""
    frames: list[str | bytes | dict] = []
    for value in [*NOT_TEXT, *UNSTORABLE]:
        frames += [
            {"type": value},
            {"type": "send", "content": value},
            {"type": "send", "content": "hi", "model": value},
            {"type": "edit", "message": 1, "content": value},
        ]
    for value in UNSTORABLE:
        frames += [{"type": "sync", "conversation": value}, {"type": "sync", value: 1}, {value: "send"}]
    for value in NOT_IDS:
        frames += [
            {"type": "stop", "message": value},
            {"type": "regenerate", "message": value},
            {"type": "edit", "message": value, "content": "x"},
            {"type": "sync", "messages": [value]},
        ]
    for depth in (5, 60, 1000, 30_000):
        frames += [
            _nested(depth),
            '{"a":' * depth + "1" + "}" * depth,
            '{"type":"sync","messages":' + _nested(depth) + "}",
            '{"type":"send","model":5,"content":"' + "[" * depth + '"}',  # brackets in text are text
        ]
    frames += [
        "",
        " ",
        "null",
        "1",
        '"text"',
        "[]",
        "1" * 5000,  # longer than Python converts to an int
        '{"type":"stop","message":' + "9" * 5000 + "}",
        "NaN",
        '{"type":"stop","message":NaN}',
        '{"type":"send","content":"\\ud800"}',
        '{"type":"send","content":"\\u0000"}',
        '{"type":"send","content":"x\ud800"}',  # a lone surrogate in the frame's own text
        '"' + '\\"' * 5000,  # an unclosed string of escapes
        "\\" * 100,
        "{" * 100 + '"' * 100,
        b"\xff\xfe binary",
        "\ud800".encode("utf-8", "surrogatepass"),
        json.dumps({"type": "sync"}).encode("utf-16"),
        b"\x00" * 10,
        b"",
    ]
    return frames


def _text(frame) -> str | bytes:
    return frame if isinstance(frame, str | bytes) else json.dumps(frame)


async def _answer(communicator: WebsocketCommunicator, frame) -> dict:
    text = _text(frame)
    # Past send_to, which refuses empty frames.
    await communicator.send_input(
        {"type": "websocket.receive", "bytes" if isinstance(text, bytes) else "text": text}
    )
    return await communicator.receive_json_from(timeout=10)


async def _close_code(communicator: WebsocketCommunicator) -> int:
    output = await communicator.receive_output(timeout=10)
    assert output["type"] == "websocket.close", output
    return output["code"]


@pytest.fixture
def cookie(user):
    return session_cookie_for(user)


@pytest.fixture
def many_frames_allowed(settings):
    settings.SOCKET_FRAME_BURST = 100_000
    settings.SOCKET_PERSON_FRAMES_PER_MINUTE = 1_000_000


async def test_malformed_frames_get_an_error_frame_on_the_chat_socket(
    conversation, cookie, many_frames_allowed
):
    socket = await open_socket(conversation.pk, cookie)
    for frame in malformed_frames():
        answer = await _answer(socket.communicator, frame)
        assert answer["type"] == "error" and answer["code"] != "internal", (_text(frame)[:80], answer)
        assert answer["error"]
    answer = await _answer(socket.communicator, {"type": "sync", "messages": []})
    assert answer["type"] == "sync", "the socket must still work after every bad frame"
    assert await database_sync_to_async(conversation.messages.count)() == 0
    assert not await CrashReport.objects.aexists()
    await socket.close()


async def test_malformed_frames_get_an_error_frame_on_the_hub_socket(
    make_user, local_model, many_frames_allowed
):
    admin = await database_sync_to_async(make_user)("admin@example.com", is_staff=True, is_superuser=True)
    cookie = await database_sync_to_async(session_cookie_for)(admin)
    hub = WebsocketCommunicator(
        application,
        "/ws/hub/",
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)],
    )
    connected, _ = await hub.connect()
    assert connected
    for frame in [*malformed_frames(), {"type": "sync"}]:
        answer = await _answer(hub, frame)
        assert (answer["type"], answer["code"]) == ("error", "read_only"), (_text(frame)[:80], answer)
    assert not await CrashReport.objects.aexists()
    await hub.disconnect()


@pytest.mark.parametrize(
    ("failure", "code", "reports"),
    [
        (RuntimeError("a bug"), "internal", 1),
        (OperationalError("database is locked"), "database_busy", 0),
        (RedisError("Connection refused"), "unavailable", 0),
    ],
)
async def test_a_failure_inside_the_consumer_is_an_error_frame_logged_once(
    conversation, cookie, monkeypatch, caplog, failure, code, reports
):
    monkeypatch.setattr(selectors, "messages_state", _raising(failure))
    monkeypatch.setattr(sockets, "_reported", set())
    socket = await open_socket(conversation.pk, cookie)
    for _ in range(3):
        answer = await _answer(socket.communicator, {"type": "sync", "messages": []})
        assert (answer["type"], answer["code"]) == ("error", code)
    monkeypatch.undo()
    answer = await _answer(socket.communicator, {"type": "sync", "messages": []})
    assert answer["type"] == "sync", "the socket stays usable"
    await _reported_once(caplog, reports)
    await socket.close()


@pytest.mark.parametrize(
    ("failure", "reports"), [(RedisError("Connection refused"), 0), (RuntimeError("a bug"), 1)]
)
async def test_a_socket_that_fails_to_open_is_closed_for_a_retry_and_logged_once(
    conversation, cookie, monkeypatch, caplog, failure, reports
):
    monkeypatch.setattr(services, "replies_fail_stale", _raising(failure))
    monkeypatch.setattr(sockets, "_reported", set())
    for _ in range(3):  # the page reconnecting
        socket = ChatSocket(conversation.pk, cookie)
        await socket.connect()
        assert await _close_code(socket.communicator) == sockets.CLOSE_SERVER_ERROR
    await _reported_once(caplog, reports)


def _raising(failure: Exception):
    def fail(**kwargs):
        raise failure

    return fail


async def _reported_once(caplog, reports: int) -> None:
    tracebacks = [r for r in caplog.records if r.exc_info and r.name == sockets.__name__]
    assert len(tracebacks) == reports
    if reports:
        await wait_until_async(CrashReport.objects.exists, what="the crash report")
    assert await CrashReport.objects.acount() == reports


async def test_sending_after_the_conversation_was_deleted_in_another_tab(conversation, cookie):
    socket = await open_socket(conversation.pk, cookie)
    await database_sync_to_async(services.conversation_delete)(conversation=conversation)
    answer = await _answer(socket.communicator, {"type": "send", "content": "Are you still there?"})
    assert (answer["type"], answer["code"]) == ("error", "not_found")
    assert await _close_code(socket.communicator) == sockets.CLOSE_NOT_FOUND
    assert not await CrashReport.objects.aexists()


def _log_out(cookie: bytes) -> None:
    client = Client()
    client.cookies["sessionid"] = cookie.decode().split("=", 1)[1]
    assert client.post(reverse("account_logout")).status_code == 302


async def test_logging_out_closes_that_sessions_sockets_at_once(conversation, user):
    cookie, other_browser = [await database_sync_to_async(session_cookie_for)(user) for _ in range(2)]
    socket = await open_socket(conversation.pk, cookie)
    elsewhere = await open_socket(conversation.pk, other_browser)
    await database_sync_to_async(_log_out)(cookie)
    assert await _close_code(socket.communicator) == sockets.CLOSE_UNAUTHENTICATED
    answer = await _answer(elsewhere.communicator, {"type": "sync", "messages": []})
    assert answer["type"] == "sync", "another browser's session is still signed in"
    await elsewhere.close()


def _new_password(user: User) -> None:
    user.set_password("another long enough passphrase")
    user.save()


def _deactivated(user: User) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


@pytest.mark.parametrize("change", [_new_password, _deactivated, User.delete])
async def test_an_account_change_that_ends_the_session_closes_open_sockets_at_once(
    conversation, user, cookie, change
):
    socket = await open_socket(conversation.pk, cookie)
    await database_sync_to_async(change)(user)
    assert await _close_code(socket.communicator) == sockets.CLOSE_UNAUTHENTICATED


async def test_an_account_change_that_keeps_the_session_keeps_the_socket(conversation, user, cookie):
    socket = await open_socket(conversation.pk, cookie)
    user.display_name = "Annie"
    await database_sync_to_async(user.save)()
    answer = await _answer(socket.communicator, {"type": "sync", "messages": []})
    assert answer["type"] == "sync"
    await socket.close()


def _session_deleted(user: User) -> None:
    Session.objects.all().delete()


def _password_changed_without_signals(user: User) -> None:
    User.objects.filter(pk=user.pk).update(password=make_password("changed straight in the database"))


def _deactivated_without_signals(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


@pytest.mark.parametrize(
    "end", [_session_deleted, _password_changed_without_signals, _deactivated_without_signals]
)
async def test_every_frame_checks_the_session_is_still_signed_in(conversation, user, cookie, end):
    socket = await open_socket(conversation.pk, cookie)
    await database_sync_to_async(end)(user)
    await socket.send({"type": "send", "content": "This must not be sent."})
    assert await _close_code(socket.communicator) == sockets.CLOSE_UNAUTHENTICATED
    assert await database_sync_to_async(conversation.messages.count)() == 0


async def test_frames_beyond_the_rate_limit_are_refused_and_the_socket_stays_open(
    conversation, cookie, settings, monkeypatch
):
    now = [1000.0]
    monkeypatch.setattr(sockets, "clock", lambda: now[0])
    settings.SOCKET_FRAME_BURST = 3
    settings.SOCKET_FRAMES_PER_MINUTE = 60  # one a second

    socket = await open_socket(conversation.pk, cookie)

    async def answers(count: int) -> list[str]:
        sync = {"type": "sync", "messages": []}
        return [
            frame["type"] if frame["type"] == "sync" else frame["code"]
            for frame in [await _answer(socket.communicator, sync) for _ in range(count)]
        ]

    assert await answers(5) == ["sync", "sync", "sync", "rate_limited", "rate_limited"]
    now[0] += 2
    assert await answers(3) == ["sync", "sync", "rate_limited"]
    now[0] += 3600  # a long pause refills up to the burst, no further
    assert await answers(4) == ["sync", "sync", "sync", "rate_limited"]
    await socket.close()


async def _answers(socket: ChatSocket, count: int) -> list[str]:
    sync = {"type": "sync", "messages": []}
    return [
        frame["type"] if frame["type"] == "sync" else frame["code"]
        for frame in [await _answer(socket.communicator, sync) for _ in range(count)]
    ]


async def _socket_of(person: User, conversation) -> ChatSocket:
    return await open_socket(conversation.pk, await database_sync_to_async(session_cookie_for)(person))


async def test_a_persons_sockets_share_one_frame_allowance_and_another_person_keeps_theirs(
    make_conversation, user, other_user, settings, monkeypatch
):
    minute = [time.time() // 60 * 60]
    monkeypatch.setattr(sockets, "wall_clock", lambda: minute[0])
    settings.SOCKET_PERSON_FRAMES_PER_MINUTE = 5
    first_tab, second_tab, theirs = [
        await _socket_of(person, await database_sync_to_async(make_conversation)(person))
        for person in (user, user, other_user)
    ]

    assert await _answers(first_tab, 3) == ["sync"] * 3
    assert await _answers(second_tab, 3) == ["sync", "sync", "rate_limited"]
    assert await _answers(first_tab, 1) == ["rate_limited"]
    assert await _answers(theirs, 5) == ["sync"] * 5, "another person has an allowance of their own"
    minute[0] += 59
    assert await _answers(second_tab, 1) == ["rate_limited"]
    minute[0] += 1  # a new minute, on sockets that stayed open
    assert await _answers(first_tab, 2) == ["sync", "sync"]
    assert await _answers(second_tab, 4) == ["sync", "sync", "sync", "rate_limited"]
    for socket in (first_tab, second_tab, theirs):
        await socket.close()


async def test_a_socket_stuck_in_the_database_holds_up_no_one_elses(
    make_conversation, user, other_user, monkeypatch
):
    mine, theirs = [
        await _socket_of(person, await database_sync_to_async(make_conversation)(person))
        for person in (user, other_user)
    ]
    entered, released = threading.Event(), threading.Event()
    messages_state = selectors.messages_state

    def stuck_for_the_first_person(*, conversation, message_ids):
        if conversation.owner_id == user.pk:
            entered.set()
            released.wait(timeout=60)
        return messages_state(conversation=conversation, message_ids=message_ids)

    monkeypatch.setattr(selectors, "messages_state", stuck_for_the_first_person)
    await mine.send({"type": "sync", "messages": []})
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        assert await _answers(theirs, 2) == ["sync", "sync"]
    finally:
        released.set()
    assert (await mine.receive(timeout=10))["type"] == "sync"
    for socket in (mine, theirs):
        await socket.close()


async def test_a_socket_stuck_signing_in_holds_up_no_open_sockets_frames(
    make_conversation, user, other_user, monkeypatch
):
    theirs = await _socket_of(other_user, await database_sync_to_async(make_conversation)(other_user))
    entered, released = threading.Event(), threading.Event()
    cookie = await database_sync_to_async(session_cookie_for)(user)
    stuck_key = cookie.decode().partition("=")[2]
    session_user = sockets._session_user

    def stuck_reading_the_session(session):
        if session.session_key == stuck_key:
            entered.set()
            released.wait(timeout=60)
        return session_user(session)

    monkeypatch.setattr(sockets, "_session_user", stuck_reading_the_session)
    conversation = await database_sync_to_async(make_conversation)(user)
    newcomer = asyncio.ensure_future(open_socket(conversation.pk, cookie))
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        assert await _answers(theirs, 2) == ["sync", "sync"]
    finally:
        released.set()
    for socket in (await newcomer, theirs):
        await socket.close()

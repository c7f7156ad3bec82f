"""The chat socket against the real ASGI app, embedded mode (in-process tasks, in-memory layer)."""

import threading

import pytest
from channels.db import database_sync_to_async
from django.db.backends.signals import connection_created

from chat.models import Message, MessageStatus
from tests.chat.socket_client import ChatSocket, open_socket, session_cookie_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cookie(user):
    return session_cookie_for(user)


@pytest.fixture(autouse=True)
def short_replies_everywhere(short_replies):
    return short_replies


async def _open(conversation, cookie) -> ChatSocket:
    return await open_socket(conversation.pk, cookie)


async def test_a_socket_without_a_login_is_refused(conversation):
    connected, code = await ChatSocket(conversation.pk, cookie=None).connect()
    assert not connected and code == 4401


async def test_another_users_conversation_is_refused(make_conversation, other_user, cookie):
    theirs = await database_sync_to_async(make_conversation)(other_user)
    connected, code = await ChatSocket(theirs.pk, cookie).connect()
    assert not connected and code == 4404


async def test_a_page_from_another_site_cannot_open_the_socket(conversation, cookie):
    connected, _ = await ChatSocket(conversation.pk, cookie, origin=b"https://evil.example").connect()
    assert not connected


async def test_a_socket_opens_with_its_database_work_on_the_sockets_threads(conversation, cookie):
    """Every page opens a socket: its session, its person and their second factors are read on
    the sockets' database threads, which keep their connections, rather than by Channels' own
    hop, which opens a connection and closes it again each time."""
    opened_on: list[str] = []

    def opened(sender, connection, **kwargs) -> None:
        opened_on.append(threading.current_thread().name)

    connection_created.connect(opened)
    try:
        for _ in range(3):
            socket = await _open(conversation, cookie)
            await socket.communicator.disconnect()
    finally:
        connection_created.disconnect(opened)
    assert set(opened_on) <= {"socket-db"}


async def test_a_reply_streams_in_batches_and_matches_what_is_saved(conversation, cookie):
    socket = await _open(conversation, cookie)
    await socket.send({"type": "send", "content": "Name three fruits."})
    final = await socket.reply_finished()
    assert final["status"] == "done", final["error"]
    saved = await database_sync_to_async(Message.objects.get)(pk=final["id"])
    deltas = [f for f in socket.frames if f["type"] == "delta"]
    assert deltas, "the reply must arrive as live deltas"
    assert "".join(d["text"] for d in deltas) == saved.content
    # Batched: fewer frames than tokens, offsets contiguous.
    assert len(deltas) <= saved.completion_tokens
    offsets = [d["offset"] for d in deltas]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert final["completion_tokens"] == saved.completion_tokens and final["tokens_per_second"] > 0
    users = [f["message"] for f in socket.frames if f["type"] == "message" and f["message"]["role"] == "user"]
    assert users[0]["content"] == "Name three fruits."
    await socket.close()


BAD_FRAMES = [
    ("not json at all", "bad_json"),
    (b"\xff\xfe binary", "bad_json"),
    ([1, 2, 3], "bad_frame"),
    ({"content": "no type"}, "bad_frame"),
    ({"type": "dance"}, "unknown_type"),
    ({"type": "send"}, "bad_frame"),
    ({"type": "send", "content": ["not", "text"]}, "bad_frame"),
    ({"type": "send", "content": ""}, "empty"),
    ({"type": "send", "content": "x" * (33 * 1024)}, "too_long"),
    ({"type": "send", "content": "x" * (70 * 1024)}, "too_large"),
    ({"type": "send", "content": "hi", "model": "local:nope"}, "unknown_model"),
    ({"type": "send", "content": "hi", "model": 5}, "bad_frame"),
    ({"type": "stop", "message": "seven"}, "bad_frame"),
    ({"type": "sync", "messages": "all"}, "bad_frame"),
]


async def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(conversation, cookie):
    socket = await _open(conversation, cookie)
    for frame, code in BAD_FRAMES:
        await socket.send(frame)
        answer = await socket.receive(timeout=10)
        assert answer["type"] == "error", frame
        assert answer["code"] == code, (frame, answer)
        assert answer["error"]
    assert await database_sync_to_async(Message.objects.count)() == 0, "a bad frame must create nothing"
    await socket.send({"type": "send", "content": "Still there?"})
    assert (await socket.reply_finished())["status"] == "done"
    await socket.close()


async def test_a_frame_naming_another_conversation_is_refused(
    conversation, make_conversation, other_user, cookie
):
    theirs = await database_sync_to_async(make_conversation)(other_user)
    socket = await _open(conversation, cookie)
    await socket.send({"type": "send", "content": "hi", "conversation": str(theirs.pk)})
    answer = await socket.receive(timeout=10)
    assert (answer["type"], answer["code"]) == ("error", "forbidden")
    assert await database_sync_to_async(theirs.messages.count)() == 0
    await socket.close()


async def test_stop_naming_another_users_reply_is_refused(
    conversation, make_conversation, other_user, cookie
):
    theirs = await database_sync_to_async(make_conversation)(other_user)
    their_reply = await database_sync_to_async(Message.objects.create)(
        conversation=theirs, role="assistant", status=MessageStatus.STREAMING
    )
    socket = await _open(conversation, cookie)
    await socket.send({"type": "stop", "message": their_reply.pk})
    answer = await socket.receive(timeout=10)
    assert (answer["type"], answer["code"]) == ("error", "not_found")
    await database_sync_to_async(their_reply.refresh_from_db)()
    assert their_reply.status == MessageStatus.STREAMING
    await socket.close()


async def test_stop_ends_the_reply_and_keeps_its_text(conversation, cookie, settings):
    settings.CHAT_MAX_TOKENS = 400
    socket = await _open(conversation, cookie)
    await socket.send({"type": "send", "content": "Write a very long story about a dragon."})
    await socket.receive_until(lambda f: f["type"] == "delta" and f["offset"] > 0)
    await socket.send({"type": "stop"})
    final = await socket.reply_finished()
    assert final["status"] == "stopped"
    saved = await database_sync_to_async(Message.objects.get)(pk=final["id"])
    assert saved.content and saved.completion_tokens < 400
    assert socket.texts[final["id"]] == saved.content
    await socket.close()


async def test_a_socket_that_joins_mid_reply_catches_up_without_gaps_or_repeats(
    conversation, cookie, settings
):
    settings.CHAT_MAX_TOKENS = 200
    first = await _open(conversation, cookie)
    await first.send({"type": "send", "content": "Tell me a story about a lighthouse."})
    delta = await first.receive_until(lambda f: f["type"] == "delta" and f["offset"] > 20)
    reply_id = delta["id"]

    late = await _open(conversation, cookie)  # a reload, or a second tab
    await late.send({"type": "sync", "messages": []})
    sync = await late.receive_until(lambda f: f["type"] == "sync")
    caught_up = {m["id"]: m for m in sync["messages"]}[reply_id]
    assert caught_up["status"] == "streaming" and len(caught_up["content"]) > 20

    final = await late.reply_finished()
    await first.reply_finished()
    saved = await database_sync_to_async(Message.objects.get)(pk=reply_id)
    assert final["status"] == "done"
    assert late.texts[reply_id] == saved.content == first.texts[reply_id]
    await first.close()
    await late.close()


async def test_sync_answers_for_finished_messages_the_page_still_shows_as_active(conversation, cookie):
    socket = await _open(conversation, cookie)
    await socket.send({"type": "send", "content": "Hi!"})
    final = await socket.reply_finished()
    await socket.send({"type": "sync", "messages": [final["id"]]})
    sync = await socket.receive_until(lambda f: f["type"] == "sync")
    assert [(m["id"], m["status"]) for m in sync["messages"]] == [(final["id"], "done")]
    await socket.close()


async def test_a_local_reply_opens_no_connection_outside_loopback(conversation, cookie):
    from tests.netaudit import connections_recorded, outside_loopback

    socket = await _open(conversation, cookie)
    with connections_recorded() as hosts:
        await socket.send({"type": "send", "content": "Tell me a secret recipe."})
        final = await socket.reply_finished()
    assert final["status"] == "done"
    assert outside_loopback(hosts) == []
    await socket.close()


async def test_regenerate_and_edit_over_the_socket(conversation, cookie):
    socket = await _open(conversation, cookie)
    await socket.send({"type": "send", "content": "Name a colour."})
    first = await socket.reply_finished()
    await socket.send({"type": "regenerate", "message": first["id"]})
    removed = await socket.receive_until(lambda f: f["type"] == "removed")
    assert removed["ids"] == [first["id"]]
    second = await socket.reply_finished()
    assert second["id"] != first["id"] and second["status"] == "done"

    question = await database_sync_to_async(conversation.messages.get)(role="user")
    await socket.send({"type": "edit", "message": question.pk, "content": "Name a fruit."})
    removed = await socket.receive_until(lambda f: f["type"] == "removed")
    assert removed["ids"] == [second["id"]]
    third = await socket.reply_finished()
    assert third["status"] == "done"
    contents = await database_sync_to_async(
        lambda: list(conversation.messages.values_list("content", flat=True))
    )()
    assert contents[0] == "Name a fruit." and len(contents) == 2
    await socket.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "regenerate"}, "bad_frame"),
        ({"type": "regenerate", "message": 10**9}, "not_last_reply"),
        ({"type": "edit", "message": 10**9, "content": "x"}, "not_found"),
        ({"type": "edit", "message": 1}, "bad_frame"),
    ],
)
async def test_bad_regenerate_and_edit_frames_are_answered_with_an_error(conversation, cookie, frame, code):
    socket = await _open(conversation, cookie)
    await socket.send(frame)
    answer = await socket.receive(timeout=10)
    assert (answer["type"], answer["code"]) == ("error", code)
    await socket.close()


async def test_finished_replies_carry_sanitised_html(conversation, cookie):
    socket = await _open(conversation, cookie)
    await socket.send({"type": "send", "content": "Say hi"})
    final = await socket.reply_finished()
    assert final["display"]["html"].startswith("<") and final["content"]
    await socket.close()

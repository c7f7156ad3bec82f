"""The base of every websocket of the app: a signed-in person joins one group and hears
its live events (``localai_site.core.realtime``), and what the browser sends is guarded
here before a subclass sees it.

Messages are handled without the hop that Channels makes before each one to its single
database thread to close stale connections: an event touches no database, and that hop
costs more than the event; database work runs on a pool of threads instead
(``database_work``), which keep their connections only while work waits, so that no
socket waits for another's. Close codes are the app's, shared with the pages' scripts
(which get them as data attributes): a socket closed with one of them is not reopened.

Every frame from the browser is counted against a per-socket and a per-person rate limit,
comes from a session that must still be signed in (the check Django's auth middleware
makes on every request, made again), and whatever goes wrong while a subclass handles it is
answered with an error frame (a ``Refusal``'s stable code) on a socket that stays open. A
person's sockets also join their person's group (``user_group``), so that a logout, a new
password or a deactivation closes them at once (``user_sockets_recheck``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import import_module
from typing import ParamSpec, TypeVar, cast

from asgiref.sync import sync_to_async
from channels.auth import AuthMiddleware
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import get_user
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.db import OperationalError
from django.http import HttpRequest
from redis import RedisError

from .database_threads import DatabaseThreads
from .realtime import EVENT_TYPE, publisher
from .refusals import Refusal

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

CLOSE_SERVER_ERROR = 1011  # the page reconnects after it
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
# What a page's script is told: these mean "do not reconnect".
CLOSE_CODES = {
    "unauthenticated": CLOSE_UNAUTHENTICATED,
    "forbidden": CLOSE_FORBIDDEN,
    "not_found": CLOSE_NOT_FOUND,
}

SESSION_CHECK_TYPE = "session.check"  # handled by LiveConsumer.session_check
# The rate limits' clocks; a test freezes them to count frames instead of waiting. The
# per-person minute is shared by every web process, so it is read from the wall clock.
clock: Callable[[], float] = time.monotonic
wall_clock: Callable[[], float] = time.time
_PERSON_WINDOW_S = 60


def user_group(user_id: int) -> str:
    """The group every socket of one person joins, whatever page it belongs to."""
    return f"user.{user_id}"


def _session_digest(session_key: str) -> str:
    # A session key is a credential: events name it by digest.
    return hashlib.sha256(session_key.encode()).hexdigest()


def user_sockets_recheck(*, user_id: int, ended_session_key: str | None = None) -> None:
    """Have every open socket of a person check its session now, and close where it ended;
    the sockets of ``ended_session_key`` (a logout under way) close without checking."""
    ended = _session_digest(ended_session_key) if ended_session_key else None
    publisher.publish_event(user_group(user_id), {"type": SESSION_CHECK_TYPE, "ended": ended})


class FrameBucket:
    """A token bucket: ``burst`` frames at once, refilled at ``per_minute``."""

    def __init__(self, *, burst: int, per_minute: int, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.per_second = per_minute / 60
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@cache
def _frame_counts() -> BaseCache:
    """Django's default cache, one client for the whole process: ``django.core.cache.cache``
    is one per async context, which for sockets would be a new Redis connection per socket."""
    return caches.create_connection("default")


def _person_frame_take(user_id: int) -> bool:
    """Count a frame against its person's ``SOCKET_PERSON_FRAMES_PER_MINUTE``, shared by all
    their sockets in every web process: a counter per clock minute in Django's cache (so
    Redis in scaled mode; it lets frames through while Redis is down)."""
    counts = _frame_counts()
    key = f"socket-frames:{user_id}:{int(wall_clock() // _PERSON_WINDOW_S)}"
    if counts.add(key, 1, timeout=_PERSON_WINDOW_S):
        return True
    try:
        return counts.incr(key) <= settings.SOCKET_PERSON_FRAMES_PER_MINUTE
    except ValueError:  # expired or evicted since: this frame starts a new count
        counts.add(key, 1, timeout=_PERSON_WINDOW_S)
        return True


_database_threads = DatabaseThreads(size=lambda: settings.SOCKET_DATABASE_THREADS, name="socket-db")


def database_work(func: Callable[_P, _R]) -> Callable[_P, Awaitable[_R]]:
    """``func`` as a coroutine on the sockets' database threads, which keep their connections
    while more work waits (a burst of frames from many people) and close them once none does.
    Channels' ``database_sync_to_async`` runs the database work of every socket of a process
    on a single thread, one call after another, so one person's slow or spammed frames would
    stall everyone's. Each call is a unit of its own (its transaction starts and ends inside
    it); one socket's calls still run in order, as it awaits each."""
    # asgiref asks for a ThreadPoolExecutor but only hands it work (``run_in_executor``).
    executor = cast(ThreadPoolExecutor, _database_threads)
    return sync_to_async(func, thread_sensitive=False, executor=executor)


def _session_user(session):
    """The person ``session`` names, checked as Django checks it per request: the account
    exists and is active, and has the password (session auth hash) the session was made with."""
    request = HttpRequest()
    request.session = session
    return get_user(request)


class _SocketAuth(AuthMiddleware):
    """Channels' ``AuthMiddleware`` with the person read on the sockets' database threads:
    Channels' own hop (``database_sync_to_async``) opens a database connection and closes it
    again, for every socket that opens."""

    async def resolve_scope(self, scope) -> None:
        scope["user"]._wrapped = await database_work(_session_user)(scope["session"])


def socket_auth(inner):
    """Channels' ``AuthMiddlewareStack`` for ``inner``: the session from the cookie, and the
    person it names in ``scope["user"]``."""
    return CookieMiddleware(SessionMiddleware(_SocketAuth(inner)))


_reported: set[tuple[str, str, int | None]] = set()


def _unexpected_log(exc: Exception) -> None:
    """A failure nobody planned for is a bug: its traceback (a crash report) is logged the
    first time it happens at one place in this process, a line after that, so a person
    repeating one frame (or a page reconnecting) cannot flood the crash reports."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    key = (type(exc).__qualname__, where.filename, where.lineno)
    if key in _reported:
        logger.warning("A socket failed again: %s at %s:%s", key[0], where.filename, where.lineno)
        return
    _reported.add(key)
    logger.error("A socket failed", exc_info=exc)


def _failure_refusal(exc: Exception) -> Refusal:
    """What a failure while a socket is handled tells the browser, logged as it deserves:
    a service that is down is a warning, anything else a bug."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, OperationalError):  # a locked SQLite file, a lost connection
        logger.warning("A socket found the database unavailable: %s", exc)
        return Refusal("database_busy", "The database is busy. Try again in a moment.")
    if isinstance(exc, RedisError | OSError):
        logger.warning("A socket could not reach Redis: %s", exc)
        return Refusal("unavailable", "A service this needs is down. Try again in a moment.")
    _unexpected_log(exc)
    return Refusal("internal", "Something went wrong on the server; it has been logged.")


class LiveConsumer(AsyncWebsocketConsumer):
    _joined: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frame_bucket = FrameBucket(
            burst=settings.SOCKET_FRAME_BURST, per_minute=settings.SOCKET_FRAMES_PER_MINUTE, clock=clock
        )

    @property
    def user(self):
        return self.scope.get("user")

    async def join(self, group: str) -> None:
        """Accept the socket, subscribed to ``group`` and to its person's group."""
        self._joined = (group, user_group(self.user.pk))
        for name in self._joined:
            await self.channel_layer.group_add(name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for name in self._joined:
            try:
                await self.channel_layer.group_discard(name, self.channel_name)
            except (RedisError, OSError) as exc:
                logger.warning("Could not leave %s (Redis is down): %s", name, exc)

    async def dispatch(self, message: dict) -> None:
        # Without Channels' hop to its one thread before every message (see the module's
        # first lines): ``database_work``'s threads close their connections themselves.
        if message["type"] == EVENT_TYPE:
            await self.send(text_data=message["text"])
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict) -> None:
        try:
            await super().websocket_connect(message)
        except Exception as exc:  # not a crash report per reconnection while Redis is down
            _failure_refusal(exc)
            await self.close(code=CLOSE_SERVER_ERROR)

    async def websocket_receive(self, message: dict) -> None:
        if not self.frame_bucket.take():
            await self.refuse(Refusal("rate_limited", "That is too many messages at once. Wait a moment."))
            return
        await self._guarded(self._receive_admitted(message))

    async def _receive_admitted(self, message: dict) -> None:
        # Off the event loop: in scaled mode the count is a round trip to Redis.
        if not await sync_to_async(_person_frame_take, thread_sensitive=False)(self.user.pk):
            raise Refusal("rate_limited", "That is too many messages from all your pages. Wait a moment.")
        if await database_work(self._session_current)():
            await super().websocket_receive(message)  # on to the subclass's ``receive``
        else:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def session_check(self, event: dict) -> None:
        """A logout, a new password or a deactivation may have ended this socket's session."""
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if session_key and event["ended"] == _session_digest(session_key):
            await self.close(code=CLOSE_UNAUTHENTICATED)
        else:
            await self._guarded(self._close_if_signed_out())

    async def _close_if_signed_out(self) -> None:
        if not await database_work(self._session_current)():
            await self.close(code=CLOSE_UNAUTHENTICATED)

    def _session_current(self) -> bool:
        """The session still exists and names this socket's person, active, with the
        password (session auth hash) they had when it was made: Django's own check."""
        session = self.scope.get("session")
        if session is None or session.session_key is None or self.user is None:
            return False
        current = _session_user(import_module(settings.SESSION_ENGINE).SessionStore(session.session_key))
        return current.is_authenticated and current.pk == self.user.pk

    async def _guarded(self, work: Awaitable[None]) -> None:
        """Run ``work``; whatever it raises becomes an error frame, and the socket stays open."""
        try:
            await work
        except Exception as exc:
            await self.refuse(_failure_refusal(exc))

    async def refuse(self, refusal: Refusal) -> None:
        """Tell the browser why its frame did nothing."""
        await self.send_json({"type": "error", "code": refusal.code, "error": refusal.message})

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

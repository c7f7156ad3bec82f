"""Shared state of replies being written, visible to every web process and worker.

``live text``: the reply so far, refreshed at every batch, so a socket that (re)connects
mid-reply can catch up before the next database save.
``stop flag``: set by whichever web process received Stop, read by the generating worker.

Each batch of a reply is one call here: store the text so far, send the delta to the
conversation's sockets, read the stop flag. Scaled mode does that in one Redis round
trip from the generating thread; embedded mode keeps the state in this process.

All of it is a speed-up over the database, so while Redis is down every call here
degrades instead of raising: a reply keeps generating and saving, reads answer "nothing
live" (callers fall back to the saved text), and Stop is also recorded in the database
(``Message.stop_requested_at``, see ``chat.services.reply_stop``).
"""

from __future__ import annotations

import logging
import threading
from functools import cache

from django.conf import settings

from localai_site.core.realtime import publisher, redis_pubsub_message

logger = logging.getLogger(__name__)

_TTL_S = 60 * 60


def _live_key(message_id: int) -> str:
    return f"localai:live:{message_id}"


def _stop_key(message_id: int) -> str:
    return f"localai:stop:{message_id}"


class _MemoryStore:
    errors: tuple[type[Exception], ...] = ()  # nothing here can be unreachable

    def __init__(self) -> None:
        self._values: dict[str, object] = {}
        self._lock = threading.Lock()

    def set(self, key: str, value: object) -> None:
        with self._lock:
            self._values[key] = value

    def get_many(self, keys: list[str]) -> list:
        with self._lock:
            return [self._values.get(key) for key in keys]

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._values.pop(key, None)

    def batch_send(self, message_id: int, text: str, group: str, delta: dict) -> bool:
        with self._lock:
            self._values[_live_key(message_id)] = text
            stop = self._values.get(_stop_key(message_id))
        publisher.publish(group, delta)
        return bool(stop)


# One command per batch: store the text so far, publish the delta the way the pub/sub
# channel layer does, and read the stop flag.
_BATCH_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return redis.call('GET', KEYS[2])
"""


class _RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self.errors = (redis.RedisError,)
        self._url = url
        # A short connect timeout: an unreachable Redis must not hold up a page or a reply.
        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=1)
        self._per_thread = threading.local()

    def _batch_script(self):
        """The calling thread's own connection: a worker streaming a hundred replies at once
        would otherwise spend its time taking connections from a shared pool and back."""
        script = getattr(self._per_thread, "script", None)
        if script is None:
            import redis

            client = redis.Redis.from_url(
                self._url, decode_responses=True, single_connection_client=True, socket_connect_timeout=1
            )
            script = self._per_thread.script = client.register_script(_BATCH_SCRIPT)
        return script

    def set(self, key: str, value: object) -> None:
        self._redis.set(key, str(value), ex=_TTL_S)

    def get_many(self, keys: list[str]) -> list:
        return self._redis.mget(keys) if keys else []

    def delete(self, *keys: str) -> None:
        self._redis.delete(*keys)

    def batch_send(self, message_id: int, text: str, group: str, delta: dict) -> bool:
        channel, data = redis_pubsub_message(group, delta)
        stop = self._batch_script()(
            keys=[_live_key(message_id), _stop_key(message_id)], args=[text, _TTL_S, channel, data]
        )
        return bool(stop)


@cache
def _store() -> _MemoryStore | _RedisStore:
    return _RedisStore(settings.REDIS_URL) if settings.SCALED else _MemoryStore()


# Replies whose batches have already logged that Redis is unreachable: once per reply, not
# twenty times a second.
_unreachable_warned: set[int] = set()
_warned_lock = threading.Lock()


def _warn_unreachable(message_id: int, doing: str, exc: Exception) -> None:
    with _warned_lock:
        if message_id in _unreachable_warned:
            return
        _unreachable_warned.add(message_id)
    logger.warning(
        "Redis cannot be reached while %s for reply %s; it goes on from the database: %s",
        doing,
        message_id,
        exc,
    )


def batch_send(*, message_id: int, text: str, group: str, delta: dict) -> bool:
    """Store the reply so far and send ``delta`` to ``group``; answers whether Stop was pressed
    (False while Redis is down: the worker reads Stop from the database then)."""
    store = _store()
    try:
        return store.batch_send(message_id, text, group, delta)
    except store.errors as exc:
        _warn_unreachable(message_id, "sending a batch", exc)
        return False


def live_texts_get(message_ids: list[int]) -> dict[int, str]:
    """The live text of the replies that have one; none while Redis is down."""
    store = _store()
    try:
        values = store.get_many([_live_key(pk) for pk in message_ids])
    except store.errors as exc:
        logger.warning("Redis cannot be reached; showing the saved text of replies %s: %s", message_ids, exc)
        return {}
    return {pk: value for pk, value in zip(message_ids, values, strict=True) if value is not None}


def stop_request(message_id: int) -> bool:
    """Raise the stop flag; answers False when Redis cannot be reached."""
    store = _store()
    try:
        store.set(_stop_key(message_id), "1")
    except store.errors as exc:
        logger.warning(
            "Redis cannot be reached; Stop of reply %s is in the database only: %s", message_id, exc
        )
        return False
    return True


def stop_requested(message_id: int) -> bool:
    store = _store()
    try:
        return bool(store.get_many([_stop_key(message_id)])[0])
    except store.errors as exc:
        _warn_unreachable(message_id, "reading the stop flag", exc)
        return False


def live_state_clear(message_id: int) -> None:
    """Forget a finished reply's live state (it expires by itself if Redis is down now)."""
    with _warned_lock:
        _unreachable_warned.discard(message_id)
    store = _store()
    try:
        store.delete(_live_key(message_id), _stop_key(message_id))
    except store.errors as exc:
        logger.warning(
            "Redis cannot be reached; the live state of reply %s expires by itself: %s", message_id, exc
        )

"""Shared state of replies being written, visible to every web process and worker.

``live text``: the reply so far, refreshed at every batch, so a socket that (re)connects
mid-reply can catch up before the next database save.
``stop flag``: set by whichever web process received Stop, read by the generating worker.

Each batch of a reply is one call here: store the text so far, send the delta to the
conversation's sockets, read the stop flag. Scaled mode does that in one Redis round
trip from the generating thread; embedded mode keeps the state in this process.
"""

from __future__ import annotations

import threading
from functools import cache

from django.conf import settings

from .realtime import publisher, redis_pubsub_message

_TTL_S = 60 * 60


def _live_key(message_id: int) -> str:
    return f"localai:live:{message_id}"


def _stop_key(message_id: int) -> str:
    return f"localai:stop:{message_id}"


class _MemoryStore:
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

        self._url = url
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._per_thread = threading.local()

    def _batch_script(self):
        """The calling thread's own connection: a worker streaming a hundred replies at once
        would otherwise spend its time taking connections from a shared pool and back."""
        script = getattr(self._per_thread, "script", None)
        if script is None:
            import redis

            client = redis.Redis.from_url(self._url, decode_responses=True, single_connection_client=True)
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


def batch_send(*, message_id: int, text: str, group: str, delta: dict) -> bool:
    """Store the reply so far and send ``delta`` to ``group``; answers whether Stop was pressed."""
    return _store().batch_send(message_id, text, group, delta)


def live_texts_get(message_ids: list[int]) -> dict[int, str]:
    values = _store().get_many([_live_key(pk) for pk in message_ids])
    return {pk: value for pk, value in zip(message_ids, values, strict=True) if value is not None}


def stop_request(message_id: int) -> None:
    _store().set(_stop_key(message_id), "1")


def stop_requested(message_id: int) -> bool:
    return bool(_store().get_many([_stop_key(message_id)])[0])


def live_state_clear(message_id: int) -> None:
    _store().delete(_live_key(message_id), _stop_key(message_id))

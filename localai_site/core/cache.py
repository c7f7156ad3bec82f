"""The Django cache backend of scaled mode: Redis that fails open while Redis is down.

This is Django's cache (what ``django.core.cache.cache`` answers: allauth's rate limits
and locks), not the shared live state of replies (``chat.live``) nor the channel layer
(``localai_site.core.realtime``). Nothing kept here is the truth, so a Redis outage must not turn the
requests that touch it (signing in, signing up) into errors: a read answers a miss, a
write is skipped, ``add`` answers "stored" so a lock or a rate limit lets the request
through, and a warning is logged (at most once a minute). ``incr`` still raises: it has
no count to answer with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_WARN_EVERY_S = 60.0


class FailOpenRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._outage_errors = (redis.ConnectionError, redis.TimeoutError)
        self._warned_at = float("-inf")
        self._warn_lock = threading.Lock()

    def _or(self, fallback: _T, operation: Callable[..., _T], *args) -> _T:
        try:
            return operation(*args)
        except self._outage_errors as exc:
            with self._warn_lock:
                now = time.monotonic()
                warn = now - self._warned_at >= _WARN_EVERY_S
                if warn:
                    self._warned_at = now
            if warn:
                logger.warning("The cache (Redis) cannot be reached, so it is skipped: %s", exc)
            return fallback

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(True, super().add, key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._or(default, super().get, key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(None, super().set, key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(False, super().touch, key, timeout, version)

    def delete(self, key, version=None):
        return self._or(False, super().delete, key, version)

    def get_many(self, keys, version=None):
        return self._or({}, super().get_many, keys, version)

    def has_key(self, key, version=None):
        return self._or(False, super().has_key, key, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(list(data), super().set_many, data, timeout, version)

    def delete_many(self, keys, version=None):
        return self._or(None, super().delete_many, keys, version)

    def clear(self):
        return self._or(None, super().clear)

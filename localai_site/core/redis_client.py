"""The one Redis connection of scaled mode for small shared records (worker heartbeats).

Reply state and the channel layer have connections of their own (``chat.live``, the
channel layer); this one answers quickly or not at all: a probe must not hang on Redis.
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def redis_ok() -> bool:
    try:
        return bool(redis_client().ping())
    except Exception:
        return False

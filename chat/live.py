"""Shared-cache state of replies being written, visible to every web process and worker.

``live text``: the reply so far, refreshed at every batch, so a socket that (re)connects
mid-reply can catch up before the next database save.
``stop flag``: set by whichever web process received Stop, read by the generating worker.
"""

from __future__ import annotations

from django.core.cache import cache

_TTL_S = 60 * 60


def _live_key(message_id: int) -> str:
    return f"chat:live:{message_id}"


def _stop_key(message_id: int) -> str:
    return f"chat:stop:{message_id}"


def live_text_set(message_id: int, text: str) -> None:
    cache.set(_live_key(message_id), text, _TTL_S)


def live_texts_get(message_ids: list[int]) -> dict[int, str]:
    found = cache.get_many([_live_key(pk) for pk in message_ids])
    return {pk: found[_live_key(pk)] for pk in message_ids if _live_key(pk) in found}


def stop_request(message_id: int) -> None:
    cache.set(_stop_key(message_id), True, _TTL_S)


def stop_requested(message_id: int) -> bool:
    return bool(cache.get(_stop_key(message_id)))


def live_state_clear(message_id: int) -> None:
    cache.delete_many([_live_key(message_id), _stop_key(message_id)])

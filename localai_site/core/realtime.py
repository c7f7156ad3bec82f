"""Sending live events to browsers from synchronous code.

Events go through the channel layer to a group (a conversation's, the hub's) and reach
every socket joined to it (``localai_site.core.sockets``). ``publish`` never
blocks the caller (a worker thread generating tokens): it queues the event on an event
loop that sends them one after another, so they arrive in the order they were made.
The loop is the server's own in the web process (bound by ``bind_event_loop`` in the
ASGI app; the in-memory layer of embedded mode only works there) and a private
background loop elsewhere (Celery workers), which keeps one Redis connection pool alive
instead of starting a loop per send. While Redis is down events are dropped with a
warning (the database is the truth; a socket catches up with ``sync``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from redis import RedisError

logger = logging.getLogger(__name__)

EVENT_TYPE = "live.event"  # relayed as it is by LiveConsumer.dispatch (core.sockets)


class GroupPublisher:
    def __init__(self) -> None:
        self._target: tuple[asyncio.AbstractEventLoop, asyncio.Queue] | None = None
        self._lock = threading.Lock()

    def forget_loop(self) -> None:
        """In a forked child: the parent's event-loop thread does not exist there."""
        self._target = None
        self._lock = threading.Lock()

    def bind_event_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send from ``loop`` from now on. Must be called from inside that loop."""
        target = self._target
        if target is not None and target[0] is loop:
            return
        with self._lock:
            queue: asyncio.Queue = asyncio.Queue()
            loop.create_task(self._drain(queue))
            self._target = (loop, queue)

    def publish(self, group: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` (JSON-serialisable) for every socket in ``group``."""
        self.publish_event(group, layer_event(payload))

    def publish_event(self, group: str, event: dict[str, Any]) -> None:
        """Queue a channel-layer ``event`` for every consumer in ``group``: its ``type`` names
        the consumer's handler (``publish`` sends the one that relays a payload as it is)."""
        loop, queue = self._ensure_target()
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (group, event))
        except RuntimeError:  # the loop was closed (a finished test, a server shutting down)
            logger.debug("Dropped a live event for %s: its event loop is closed", group)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has been handed to the channel layer."""
        target = self._target
        if target is None:
            return
        loop, queue = target
        try:
            if loop.is_running() and not _running_in(loop):
                asyncio.run_coroutine_threadsafe(queue.join(), loop).result(timeout)
        except (TimeoutError, RuntimeError):
            logger.warning("Live events were still queued after %.1fs", timeout)

    def _ensure_target(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        target = self._target
        if target is not None and not target[0].is_closed():
            return target
        with self._lock:
            if self._target is None or self._target[0].is_closed():
                self._target = self._start_background_loop()
            return self._target

    def _start_background_loop(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="localai-publisher", daemon=True).start()

        async def make_queue() -> asyncio.Queue:
            queue: asyncio.Queue = asyncio.Queue()
            loop.create_task(self._drain(queue))
            return queue

        return loop, asyncio.run_coroutine_threadsafe(make_queue(), loop).result()

    @staticmethod
    async def _drain(queue: asyncio.Queue) -> None:
        layer = get_channel_layer()
        unreachable = False  # warn once per outage, not once per event
        while True:
            group, event = await queue.get()
            try:
                await layer.group_send(group, event)
            except (RedisError, OSError) as exc:
                if not unreachable:
                    logger.warning("Redis cannot be reached; live events are dropped until it is: %s", exc)
                unreachable = True
            except Exception:
                logger.exception("Could not send a live event to %s", group)
            else:
                if unreachable:
                    logger.info("Redis can be reached again; live events go out")
                unreachable = False
            finally:
                queue.task_done()


def layer_event(payload: dict[str, Any]) -> dict[str, str]:
    # Serialised to JSON once here, not once per connected socket.
    return {"type": EVENT_TYPE, "text": json.dumps(payload, separators=(",", ":"))}


def redis_pubsub_message(group: str, payload: dict[str, Any]) -> tuple[str, bytes]:
    """The Redis channel and bytes that the pub/sub channel layer's ``group_send`` would
    PUBLISH, so a worker can send a delta in the same round trip as its other writes.
    Delivery through this path is covered by the scaled-mode tests."""
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]  # type: ignore[index]
    return f"{prefix}__group__{group}", get_channel_layer().serialize(layer_event(payload))


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


publisher = GroupPublisher()


os.register_at_fork(after_in_child=publisher.forget_loop)


class BindPublisherLoop:
    """ASGI wrapper: live events from this process go out through the server's loop."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        publisher.bind_event_loop(asyncio.get_running_loop())
        return await self.app(scope, receive, send)

"""The base of every websocket of the app: a signed-in person joins one group and hears
its live events (``localai_site.core.realtime``).

Live events are relayed as they come, without the hop to a thread that Channels makes per
message to close stale database connections: an event touches no database, and that hop
costs more than the event. Close codes are the app's, shared with the pages' scripts
(which get them as data attributes): a socket closed with one of them is not reopened.
"""

from __future__ import annotations

import json
import logging

from channels.generic.websocket import AsyncWebsocketConsumer
from redis import RedisError

from .realtime import EVENT_TYPE

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
# What a page's script is told: these mean "do not reconnect".
CLOSE_CODES = {
    "unauthenticated": CLOSE_UNAUTHENTICATED,
    "forbidden": CLOSE_FORBIDDEN,
    "not_found": CLOSE_NOT_FOUND,
}


class LiveConsumer(AsyncWebsocketConsumer):
    group: str | None = None

    @property
    def user(self):
        return self.scope.get("user")

    async def join(self, group: str) -> None:
        """Accept the socket, subscribed to ``group``."""
        await self.channel_layer.group_add(group, self.channel_name)
        self.group = group
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except (RedisError, OSError) as exc:
                logger.warning("Could not leave %s (Redis is down): %s", self.group, exc)

    async def dispatch(self, message: dict) -> None:
        if message["type"] == EVENT_TYPE:
            await self.send(text_data=message["text"])
        else:
            await super().dispatch(message)

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

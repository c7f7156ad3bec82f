from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer

from chat.realtime import EVENT_TYPE

from .events import HUB_GROUP
from .permissions import can_manage_models

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class HubConsumer(AsyncWebsocketConsumer):
    """Live download progress and model changes for every admin who has the hub open."""

    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not can_manage_models(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(HUB_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(HUB_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The page only listens; actions go through forms, where permissions and CSRF apply.
        await self.send(
            text_data=json.dumps({"type": "error", "code": "read_only", "error": "This socket only sends."})
        )

    async def dispatch(self, message: dict) -> None:
        if message["type"] == EVENT_TYPE:
            await self.send(text_data=message["text"])
        else:
            await super().dispatch(message)

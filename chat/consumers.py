from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import selectors, services
from .errors import ChatError
from .events import error_event, sync_event
from .frames import ClientFrame, EditFrame, RegenerateFrame, SendFrame, StopFrame, frame_parse
from .realtime import EVENT_TYPE

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket per open conversation page. Replies arrive through the group."""

    conversation = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.conversation = await database_sync_to_async(selectors.conversation_get_owned)(
            user=user, conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"]
        )
        if self.conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.channel_layer.group_add(self.conversation.group_name, self.channel_name)
        await self.accept()
        await database_sync_to_async(services.replies_fail_stale)(conversation=self.conversation)

    async def disconnect(self, code: int) -> None:
        if self.conversation is not None:
            await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = frame_parse(
                text_data if text_data is not None else bytes_data, conversation_id=str(self.conversation.pk)
            )
            await self._handle(frame)
        except ChatError as exc:
            await self._send_json(error_event(code=exc.code, error=exc.message))

    async def _handle(self, frame: ClientFrame) -> None:
        if isinstance(frame, SendFrame):
            await database_sync_to_async(services.message_send)(
                conversation=self.conversation, content=frame.content, model_id=frame.model
            )
        elif isinstance(frame, RegenerateFrame):
            await database_sync_to_async(services.reply_regenerate)(
                conversation=self.conversation, message_id=frame.message_id
            )
        elif isinstance(frame, EditFrame):
            await database_sync_to_async(services.message_edit)(
                conversation=self.conversation, message_id=frame.message_id, content=frame.content
            )
        elif isinstance(frame, StopFrame):
            stopped = await database_sync_to_async(services.reply_stop)(
                conversation=self.conversation, message_id=frame.message_id
            )
            if frame.message_id is not None and not stopped:
                raise ChatError("not_found", "There is no reply being written with that id here.")
        else:
            state = await database_sync_to_async(selectors.messages_state)(
                conversation=self.conversation, message_ids=frame.message_ids
            )
            await self._send_json(sync_event(state))

    async def dispatch(self, message: dict) -> None:
        # Live events touch no database: skip the per-message hop to a thread that
        # Channels makes to close stale connections, which costs more than the event.
        if message["type"] == EVENT_TYPE:
            await self.send(text_data=message["text"])
        else:
            await super().dispatch(message)

    async def _send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

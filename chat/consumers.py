from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from redis import RedisError

from . import selectors, services
from .errors import ChatError
from .events import error_event, message_event, sync_event
from .frames import ClientFrame, EditFrame, RegenerateFrame, SendFrame, StopFrame, frame_parse
from .models import Message, MessageStatus
from .realtime import EVENT_TYPE

logger = logging.getLogger(__name__)

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
            try:
                await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
            except (RedisError, OSError) as exc:
                logger.warning("Could not leave %s (Redis is down): %s", self.conversation.group_name, exc)

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
            user_message, reply = await database_sync_to_async(services.message_send)(
                conversation=self.conversation, content=frame.content, model_id=frame.model
            )
            await self._tell_if_not_queued(user_message, reply)
        elif isinstance(frame, RegenerateFrame):
            reply = await database_sync_to_async(services.reply_regenerate)(
                conversation=self.conversation, message_id=frame.message_id
            )
            await self._tell_if_not_queued(reply)
        elif isinstance(frame, EditFrame):
            reply = await database_sync_to_async(services.message_edit)(
                conversation=self.conversation, message_id=frame.message_id, content=frame.content
            )
            await self._tell_if_not_queued(reply)
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

    async def _tell_if_not_queued(self, *messages: Message) -> None:
        """A reply that could not be queued failed because Redis is down, and so are the live
        events that would show it: this socket hears it straight from here."""
        reply = messages[-1]
        if reply.status != MessageStatus.FAILED:
            return
        for message in messages:
            await self._send_json(message_event(message))
        await self._send_json(error_event(code="queue_unreachable", error=reply.error))

    async def dispatch(self, message: dict) -> None:
        # Live events touch no database: skip the per-message hop to a thread that
        # Channels makes to close stale connections, which costs more than the event.
        if message["type"] == EVENT_TYPE:
            await self.send(text_data=message["text"])
        else:
            await super().dispatch(message)

    async def _send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload, separators=(",", ":")))

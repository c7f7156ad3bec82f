from __future__ import annotations

from localai_site.core.refusals import Refusal
from localai_site.core.sockets import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, LiveConsumer, database_work

from . import selectors, services
from .events import message_event, sync_event
from .frames import ClientFrame, EditFrame, RegenerateFrame, SendFrame, StopFrame, frame_parse
from .models import Conversation, Message, MessageStatus


class ChatConsumer(LiveConsumer):
    """One socket per open conversation page. Replies arrive through the group; frames
    reach ``receive`` through the base's guards (rate limit, session, error frames)."""

    conversation = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.conversation = await database_work(selectors.conversation_get_owned)(
            user=user, conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"]
        )
        if self.conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.join(self.conversation.group_name)
        await database_work(services.replies_fail_stale)(conversation=self.conversation)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = frame_parse(
            text_data if text_data is not None else bytes_data, conversation_id=str(self.conversation.pk)
        )
        try:
            await self._handle(frame)
        except Conversation.DoesNotExist:  # deleted in another tab: nothing more can happen here
            await self.refuse(Refusal("not_found", "This conversation was deleted."))
            await self.close(code=CLOSE_NOT_FOUND)

    async def _handle(self, frame: ClientFrame) -> None:
        if isinstance(frame, SendFrame):
            user_message, reply = await database_work(services.chat_message_send)(  # or /image
                conversation=self.conversation,
                content=frame.content,
                model_id=frame.model,
                upload_ids=frame.uploads,
            )
            await self._tell_if_not_queued(user_message, reply)
        elif isinstance(frame, RegenerateFrame):
            reply = await database_work(services.chat_reply_regenerate)(  # or a new image
                conversation=self.conversation, message_id=frame.message_id
            )
            await self._tell_if_not_queued(reply)
        elif isinstance(frame, EditFrame):
            reply = await database_work(services.chat_message_edit)(  # or /image
                conversation=self.conversation, message_id=frame.message_id, content=frame.content
            )
            await self._tell_if_not_queued(reply)
        elif isinstance(frame, StopFrame):
            stopped = await database_work(services.reply_stop)(
                conversation=self.conversation, message_id=frame.message_id
            )
            if frame.message_id is not None and not stopped:
                raise Refusal("not_found", "There is no reply being written with that id here.")
        else:
            state = await database_work(selectors.messages_state)(
                conversation=self.conversation, message_ids=frame.message_ids
            )
            await self.send_json(sync_event(state))

    async def _tell_if_not_queued(self, *messages: Message) -> None:
        """A reply that could not be queued failed because Redis is down, and so are the live
        events that would show it: this socket hears it straight from here."""
        reply = messages[-1]
        if reply.status != MessageStatus.FAILED:
            return
        # A bubble's HTML reads its files from the database: made off the event loop.
        events = await database_work(lambda: [message_event(message) for message in messages])()
        for event in events:
            await self.send_json(event)
        await self.refuse(Refusal("queue_unreachable", reply.error))

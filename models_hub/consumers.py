from __future__ import annotations

from localai_site.core.refusals import Refusal
from localai_site.core.sockets import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, LiveConsumer, database_work

from .events import HUB_GROUP
from .permissions import can_manage_models


class HubConsumer(LiveConsumer):
    """Live download progress and model changes for every admin who has the hub open."""

    async def connect(self) -> None:
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
        # A staff member's permissions come from the database (a superuser's do not).
        elif not await database_work(can_manage_models)(self.user):
            await self.close(code=CLOSE_FORBIDDEN)
        else:
            await self.join(HUB_GROUP)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The page only listens; actions go through forms, where permissions and CSRF apply.
        raise Refusal("read_only", "This socket only sends.")

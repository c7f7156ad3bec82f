from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Provider(models.TextChoices):
    """Who received the text of a message: this instance, or a named cloud provider."""

    LOCAL = "local", "This instance"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, help_text="Model id, e.g. local:smollm2-135m-instruct")
    provider = models.CharField(max_length=50, default=Provider.LOCAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title or "New chat"

    @property
    def group_name(self) -> str:
        """The channel-layer group that carries this conversation's live updates."""
        return f"chat.{self.id.hex}"


class Role(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    SYSTEM = "system", "System"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    STREAMING = "streaming", "Being written"
    DONE = "done", "Complete"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


ACTIVE_STATUSES = (MessageStatus.QUEUED, MessageStatus.STREAMING)


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=MessageStatus.choices, default=MessageStatus.DONE)
    error = models.CharField(max_length=500, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=50, default=Provider.LOCAL, help_text="Who received this text.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the generating worker at every save: how the app tells a live reply from
    # one whose worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="message_conversation_order"),
            models.Index(
                fields=["status"],
                name="message_status",
                condition=models.Q(status__in=["queued", "streaming"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or not self.duration_ms or self.ttft_ms is None:
            return None
        decode_ms = self.duration_ms - self.ttft_ms
        return round(self.completion_tokens * 1000 / decode_ms, 1) if decode_ms > 0 else None

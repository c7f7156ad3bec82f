from django.contrib import admin

from .models import Conversation, Message


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Metadata only: reading people's conversations is not part of running the instance."""

    list_display = ["id", "owner", "model", "provider", "created_at", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["owner__email", "id"]
    fields = ["owner", "model", "provider", "created_at", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "conversation",
        "role",
        "status",
        "model",
        "provider",
        "completion_tokens",
        "created_at",
    ]
    list_filter = ["status", "role", "provider"]
    fields = [
        "conversation",
        "role",
        "status",
        "error",
        "model",
        "provider",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

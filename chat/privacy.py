from localai_site.core.privacy import PersonalData, PrivacyPanel, register, register_panel, register_section

from .models import Conversation, Message, Persona, Upload
from .selectors import conversation_counts, recipients_of, uploads_for

register(
    PersonalData(
        Conversation,
        owner="owner",
        purpose="Your chat history, for continuity.",
        category="conversations",
        fields=("id", "title", "model", "provider", "persona_id", "pinned", "created_at", "updated_at"),
    ),
    PersonalData(
        Message,
        owner="conversation__owner",
        purpose="Your chat history; each message records who received it.",
        category="messages",
        fields=(
            "id",
            "conversation_id",
            "role",
            "content",
            "status",
            "model",
            "provider",
            "prompt_tokens",
            "completion_tokens",
            "created_at",
        ),
    ),  # fmt: skip
    PersonalData(
        Persona,
        owner="owner",
        purpose="Assistant personalities you made.",
        category="personas",
        fields=("name", "description", "system_prompt", "default_model", "temperature", "created_at"),
    ),
    PersonalData(
        Upload,
        owner="owner",
        purpose="Files you gave the instance, to use them in your chats.",
        category="uploads",
        # "file" names the original in the archive's files/ folder.
        fields=("id", "conversation_id", "original_name", "content_type", "size", "created_at", "file"),
        files=("file",),
    ),
)

register_section("recipients", lambda user: recipients_of(user=user))
register_panel(
    PrivacyPanel(
        template="chat/privacy_panel.html",
        context=lambda user: {
            "recipients": recipients_of(user=user),
            "uploads": uploads_for(user=user),
            "conversation_counts": conversation_counts(user=user),
        },
    )
)

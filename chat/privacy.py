from collections.abc import Iterator

from django.template.loader import render_to_string
from django.utils import timezone

from localai_site.core.privacy import (
    ExportPage,
    PersonalData,
    PrivacyPanel,
    register,
    register_pages,
    register_panel,
    register_section,
)

from .display import message_display
from .models import Conversation, Message, Persona, Upload, UploadPage
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
        fields=(
            "id",
            "conversation_id",
            "message_id",
            "original_name",
            "content_type",
            "size",
            "model",
            "provider",
            "created_at",
            "file",
        ),
        files=("file",),
    ),
    PersonalData(
        UploadPage,
        owner="upload__owner",
        purpose="The text read from your PDFs, for the models you send them to.",
        category=None,  # the PDFs themselves are in the export
    ),
)


def conversation_pages(user) -> Iterator[ExportPage]:
    """Each conversation as a page to read: who wrote each message, when, with which model
    and who received it, and the files given in it (linked to their copies in the archive)."""
    conversations = Conversation.objects.filter(owner=user).select_related("persona").order_by("-updated_at")
    for conversation in conversations.iterator(chunk_size=100):
        messages = [(m, message_display(m)) for m in conversation.messages.all()]
        uploads = conversation.uploads.order_by("created_at")
        html = render_to_string(
            "chat/export_conversation.html",
            {"conversation": conversation, "messages": messages, "uploads": uploads},
        )
        count, last = len(messages), timezone.localtime(conversation.updated_at)
        yield ExportPage(
            path=f"conversations/{conversation.pk}.html",
            title=conversation.display_title,
            html=html,
            summary=f"{count} message{'' if count == 1 else 's'}, last {last:%Y-%m-%d %H:%M}",
        )


register_pages("Your conversations", conversation_pages)
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

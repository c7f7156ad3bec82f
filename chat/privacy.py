from collections.abc import Iterator

from django.template.loader import render_to_string
from django.utils import timezone

from localai_site.core.privacy import (
    ExportPage,
    PersonalData,
    PrivacyPanel,
    register,
    register_before_erase,
    register_pages,
    register_panel,
    register_section,
)

from .display import message_display
from .models import (
    CloudTranscription,
    Conversation,
    GeneratedImage,
    ImageGeneration,
    Message,
    Persona,
    Upload,
    UploadDelivery,
    UploadPage,
)
from .selectors import (
    conversation_counts,
    generated_images_for,
    image_recipients_of,
    recipients_of,
    uploads_for,
)
from .services.conversations import prompts_forget_after_commit

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
            "created_at",
            "file",
        ),
        files=("file",),
    ),
    PersonalData(
        UploadDelivery,
        owner="upload__owner",
        purpose="Which models received each of your files, so you know where they went.",
        category="upload_recipients",
        fields=("upload_id", "model", "provider", "first_sent_at"),
    ),
    PersonalData(
        ImageGeneration,
        owner="owner",
        purpose="Your image prompts, kept with the images made from them until you delete them; "
        "each records which provider received the prompt and the image it edited.",
        category="image_prompts",
        # The mask is kept only until the provider has it, and is not exported.
        fields=(
            "id",
            "prompt",
            "style",
            "shape",
            "size",
            "quality",
            "count",
            "model",
            "provider",
            "source_id",
            "source_upload_id",
            "sent_image",
            "status",
            "error",
            "created_at",
            "finished_at",
        ),
        files=("mask",),
    ),
    PersonalData(
        GeneratedImage,
        owner="owner",
        purpose="Images made for you, in your private gallery.",
        category="generated_images",
        fields=("id", "generation_id", "content_type", "width", "height", "size", "created_at", "file"),
        files=("file",),
    ),
    PersonalData(
        CloudTranscription,
        owner="owner",
        purpose="Which cloud provider transcribed each voice recording you sent it (not the audio).",
        category="cloud_transcriptions",
        fields=("conversation_id", "provider", "model", "size", "created_at"),
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
# Before: the erasure deletes the conversations before its own steps run.
register_before_erase(
    lambda user: prompts_forget_after_commit(Conversation.objects.filter(owner=user).only("id"))
)
register_section("recipients", lambda user: recipients_of(user=user))
register_section("image_recipients", lambda user: image_recipients_of(user=user))
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
register_panel(
    PrivacyPanel(
        template="chat/privacy_images.html",
        context=lambda user: {
            "images": generated_images_for(user=user),
            "recipients": image_recipients_of(user=user),
        },
    )
)

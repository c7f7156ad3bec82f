"""Everything that changes chat data, one module per concern; views, consumers, tasks,
the admin and tests call it as ``services.<thing>_<action>``.

Dependencies among the modules point one way (an import-linter contract keeps it so):
``conversations`` (with ``personas``), ``generation`` (with ``prompt``) and ``completions``
(the API's) use ``replies``;
``art`` (``/image`` in a chat) uses ``replies`` and ``uploads``;
``replies``, ``uploads``, ``voice`` and ``art`` use ``choice``;
``choice``, ``prompt``, ``personas`` and ``cloud`` use none of the others.
"""

from .art import (
    chat_message_edit,
    chat_message_send,
    chat_reply_regenerate,
    generated_image_as,
    generated_image_delete,
    generated_image_to_chat,
    generated_images_clear,
    image_generation_delete,
    image_generation_run,
    image_generation_start,
    image_generations_fail_stale,
    image_models_offered,
    image_size,
)
from .choice import cloud_allowed
from .cloud import cloud_models_discover, cloud_provider_save
from .completions import completion_start
from .conversations import (
    conversation_create,
    conversation_delete,
    conversation_pin,
    conversation_rename,
    conversations_clear,
)
from .generation import reply_generate
from .personas import persona_delete, persona_save
from .prompt import Prompt, history_of, prompt_build
from .replies import message_edit, message_send, replies_fail_stale, reply_regenerate, reply_stop
from .uploads import upload_delete, upload_document_read, upload_save
from .voice import voice_recording_save, voice_recordings_forget_stale, voice_status, voice_transcribe

__all__ = [
    "Prompt",
    "cloud_allowed",
    "cloud_models_discover",
    "chat_message_edit",
    "chat_message_send",
    "chat_reply_regenerate",
    "cloud_provider_save",
    "completion_start",
    "generated_image_as",
    "generated_image_delete",
    "generated_image_to_chat",
    "generated_images_clear",
    "image_generation_delete",
    "image_generation_run",
    "image_generation_start",
    "image_generations_fail_stale",
    "image_models_offered",
    "image_size",
    "conversation_create",
    "conversation_delete",
    "conversation_pin",
    "conversation_rename",
    "conversations_clear",
    "history_of",
    "message_edit",
    "message_send",
    "persona_delete",
    "persona_save",
    "prompt_build",
    "replies_fail_stale",
    "reply_generate",
    "reply_regenerate",
    "reply_stop",
    "upload_delete",
    "upload_document_read",
    "upload_save",
    "voice_recording_save",
    "voice_recordings_forget_stale",
    "voice_status",
    "voice_transcribe",
]

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models

from localai_site.core.crypto import EncryptedTextField
from localai_site.core.states import StatefulQuerySet, StateMachine


class Provider(models.TextChoices):
    """Who received the text of a message: this instance, or a cloud provider (its slug)."""

    LOCAL = "local", "This instance"


class CloudProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    GEMINI = "gemini", "Google Gemini"
    GROK = "grok", "xAI Grok"
    DEEPSEEK = "deepseek", "DeepSeek"
    CUSTOM = "custom", "Other OpenAI-compatible endpoint"


class CloudProvider(models.Model):
    """A cloud service replies can come from. Its API key is stored encrypted."""

    slug = models.SlugField(max_length=50, unique=True, help_text="Short name used in model ids.")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=20, choices=CloudProviderKind.choices)
    base_url = models.URLField(max_length=300)
    api_key_encrypted = EncryptedTextField()
    api_key_hint = models.CharField(max_length=12, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    # Voice input in a cloud chat may go here when the person asks (POST /audio/transcriptions).
    transcription_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="Its speech-to-text model (e.g. gpt-4o-mini-transcribe), offered for voice input "
        "in cloud chats with this provider. Empty: recordings are always transcribed on this instance.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CloudModel(models.Model):
    """A model of a cloud provider; users can pick it once an admin enables it."""

    provider = models.ForeignKey(CloudProvider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200, help_text="The provider's id for the model.")
    label = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=False)
    context_length = models.PositiveIntegerField(default=32_768)
    sees_images = models.BooleanField(
        default=False,
        help_text="Accepts images (OpenAI-style image parts). Guessed from the name at discovery.",
    )
    makes_images = models.BooleanField(
        default=False,
        help_text="Generates and edits images (the gallery and /image). Guessed from the name at discovery.",
    )
    discovered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="unique_cloud_model")]

    def __str__(self) -> str:
        return f"{self.provider.name} · {self.label or self.name}"

    @property
    def model_id(self) -> str:
        return f"cloud:{self.provider.slug}/{self.name}"


class Persona(models.Model):
    """An assistant personality: a system prompt with a default model and temperature.

    Built-in and shared personas have no owner or are marked shared; the rest belong to
    the person who made them and are seen by nobody else.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="personas"
    )
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(max_length=8000)
    default_model = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(null=True, blank=True)
    is_shared = models.BooleanField(default=False, help_text="Offered to everyone on the instance.")
    is_builtin = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_builtin", "name"]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, help_text="Model id, e.g. local:smollm2-135m-instruct")
    provider = models.CharField(max_length=50, default=Provider.LOCAL)
    persona = models.ForeignKey(Persona, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pinned = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-pinned", "-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        # Not the title: it is the person's words, and admin pages and history show this.
        return f"Conversation {self.pk}"

    @property
    def display_title(self) -> str:
        return self.title or "New chat"

    @property
    def group_name(self) -> str:
        """The channel-layer group that carries this conversation's live updates."""
        return f"chat.{self.id.hex}"

    @property
    def prompt_cache_key(self) -> str:
        """What a local model runner keeps this conversation's prompt under between turns: the
        person first, whose other conversations' prompts may start this one's (an API client
        sends the whole history again, a new conversation each time)."""
        return f"{self.owner_id}.{self.id.hex}"


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
    # Of the prompt's, those the model found already evaluated (a local runner's kept prompt).
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token.")
    omitted_turns = models.PositiveIntegerField(
        default=0, help_text="Older messages left out to fit the model's context window."
    )
    # Of a document too long for the model's context: the pages it read, "pages 3, 7–9 of a.pdf".
    pages_used = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the generating worker at every save: how the app tells a live reply from
    # one whose worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When Stop was pressed: the generating worker reads it from here too, so Stop works
    # while the shared store (Redis) cannot be reached.
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # Of a reply asked for through the API: the sampling its caller chose (``chat.api``).
    sampling = models.JSONField(default=dict, blank=True)

    # A reply's life; a person's own message is done from the start. The worker, Stop and
    # the stale check race for the same row, so every move is a compare-and-set made
    # through ``Message.objects`` (``transition``, ``update_while``, ``fail_stale``).
    STATES = StateMachine(
        {
            MessageStatus.QUEUED: frozenset(
                {MessageStatus.STREAMING, MessageStatus.STOPPED, MessageStatus.FAILED}
            ),
            MessageStatus.STREAMING: frozenset(
                {MessageStatus.DONE, MessageStatus.STOPPED, MessageStatus.FAILED}
            ),
        }
    )
    objects = StatefulQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="message_conversation_order"),
            # "Is a reply being written here?" on every send: SQLite cannot use the partial
            # index below when the statuses come as query parameters.
            models.Index(fields=["conversation", "status"], name="message_conversation_status"),
            models.Index(
                fields=["status"],
                name="message_status",
                condition=models.Q(status__in=["queued", "streaming"]),
            ),
            # The operator's recent replies (/metrics, Admin → Operations) by when they ended.
            models.Index(fields=["finished_at"], name="message_finished"),
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


class CloudTranscription(models.Model):
    """A voice recording sent to a cloud provider to be transcribed: who received it and when,
    for the person's access report. Neither the audio nor its words are kept here."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cloud_transcriptions"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=50, help_text="Who received the recording (its slug).")
    model = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"recording sent to {self.provider}"


def upload_path(upload: Upload, filename: str) -> str:
    # A random name with the extension of the checked type: the path on disk says neither
    # whose file it is nor what the person called it.
    return f"uploads/{secrets.token_hex(16)}{UPLOAD_EXTENSIONS[upload.content_type]}"


UPLOAD_EXTENSIONS = {
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "text/plain": ".txt",
    # A voice recording the person kept (the containers browsers record in).
    "audio/webm": ".webm",
    "audio/ogg": ".ogg",
}
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
AUDIO_TYPES = frozenset({"audio/webm", "audio/ogg"})


class DocumentText(models.TextChoices):
    """Where reading a PDF's text (``chat.read_document``) stands; blank for other files."""

    PENDING = "pending", "Being read"
    READ = "read", "Read"
    NO_TEXT = "no_text", "No text layer"
    NO_OCR = "no_ocr", "Scanned, and OCR is not installed"
    FAILED = "failed", "Could not be read"


class Upload(models.Model):
    """A file a person gave the instance. Kept in the private media folder under the data
    directory (never served from a public URL) and downloadable by its owner only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    # Deleting a conversation deletes the files given in it, as a person deleting a chat expects.
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="uploads"
    )
    file = models.FileField(upload_to=upload_path, max_length=200)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, choices=[(t, t) for t in UPLOAD_EXTENSIONS])
    size = models.PositiveBigIntegerField()
    # The message it was sent with; none while it waits in the composer. Deleted with it.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    page_count = models.PositiveIntegerField(null=True, blank=True)  # PDFs
    text_status = models.CharField(max_length=10, choices=DocumentText.choices, blank=True)
    ocr_pages = models.PositiveIntegerField(default=0, help_text="Scanned pages read by OCR.")
    unread_scans = models.PositiveIntegerField(default=0, help_text="Scanned pages not read: no OCR here.")
    created_at = models.DateTimeField(auto_now_add=True)

    PER_MESSAGE = 10  # files one message may carry

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="upload_owner_recent")]

    def __str__(self) -> str:
        return self.original_name

    @property
    def is_image(self) -> bool:
        return self.content_type in IMAGE_TYPES

    @property
    def is_audio(self) -> bool:
        """A kept voice recording: shown and played, never sent to a model."""
        return self.content_type in AUDIO_TYPES


class UploadDelivery(models.Model):
    """A model that received a file (its bytes, or its text) in a prompt: a file goes with
    the history to every reply after it, so one file may reach several models."""

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="deliveries")
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=50, help_text="This instance, or a cloud provider.")
    first_sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["upload", "first_sent_at"]
        constraints = [models.UniqueConstraint(fields=["upload", "model"], name="unique_upload_delivery")]

    def __str__(self) -> str:
        return f"{self.upload_id} sent to {self.model}"


class UploadPage(models.Model):
    """The text of one page of a PDF, as read once by ``chat.read_document``."""

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField()  # from 1
    text = models.TextField(blank=True)
    ocr = models.BooleanField(default=False, help_text="Scanned: its text was read by OCR.")

    class Meta:
        ordering = ["upload", "number"]
        constraints = [models.UniqueConstraint(fields=["upload", "number"], name="unique_upload_page")]

    def __str__(self) -> str:
        return f"page {self.number} of {self.upload_id}"


def generated_image_path(image: GeneratedImage, filename: str) -> str:
    return f"images/{secrets.token_hex(16)}{UPLOAD_EXTENSIONS[image.content_type]}"  # says nothing


def image_mask_path(generation: ImageGeneration, filename: str) -> str:
    return f"images/masks/{secrets.token_hex(16)}.png"


class ImageStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    GENERATING = "generating", "Being made"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImageGeneration(models.Model):
    """One request for images: the prompt and its settings, who received them (and the
    source image, for an edit), and how it went. Its images are ``GeneratedImage`` rows."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="image_generations"
    )
    prompt = models.TextField(max_length=4000)
    style = models.CharField(max_length=40, blank=True)
    shape = models.CharField(max_length=12, default="square")  # square, landscape, portrait
    size = models.CharField(max_length=20)  # as the provider was asked: "1024x1024", or "3:2"
    quality = models.CharField(max_length=10, blank=True)
    count = models.PositiveSmallIntegerField(default=1)
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=50, help_text="Who received the prompt (and the source image).")
    # An edit: the image it starts from (a generated one or an uploaded one) and the painted
    # mask, kept only until the provider has it.
    source = models.ForeignKey(
        "GeneratedImage", null=True, blank=True, on_delete=models.SET_NULL, related_name="edits"
    )
    source_upload = models.ForeignKey(
        Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="image_edits"
    )
    sent_image = models.BooleanField(default=False, help_text="A source image went to the provider.")
    # Asked for with /image in a chat: the reply that shows the image there.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="image_generations"
    )
    mask = models.FileField(upload_to=image_mask_path, max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=ImageStatus.choices, default=ImageStatus.QUEUED)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    STATES = StateMachine(
        {
            ImageStatus.QUEUED: frozenset({ImageStatus.GENERATING, ImageStatus.FAILED}),
            ImageStatus.GENERATING: frozenset({ImageStatus.DONE, ImageStatus.FAILED}),
        }
    )
    objects = StatefulQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="imagegen_owner_recent")]

    def __str__(self) -> str:
        return f"Image generation {self.pk}"  # not the prompt: it is the person's words

    @property
    def is_active(self) -> bool:
        return self.status in (ImageStatus.QUEUED, ImageStatus.GENERATING)


class GeneratedImage(models.Model):
    """An image a provider made, as we wrote it again (without metadata), in the private
    media folder; shown and downloaded by its owner only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generated_images"
    )
    generation = models.ForeignKey(ImageGeneration, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=generated_image_path, max_length=200)
    content_type = models.CharField(max_length=20, choices=[(t, t) for t in sorted(IMAGE_TYPES)])
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="genimage_owner_recent")]

    def __str__(self) -> str:
        return f"Generated image {self.pk}"

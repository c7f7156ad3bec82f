from __future__ import annotations

from enum import StrEnum

from django.conf import settings
from django.db import models

from localai_site.core.crypto import EncryptedTextField
from localai_site.core.refusals import Refusal
from localai_site.core.singleton import SingletonModel
from localai_site.core.states import StatefulQuerySet, StateMachine


class ModelFamily(models.TextChoices):
    LLAMA = "llama", "Llama"
    GEMMA = "gemma", "Gemma"
    QWEN = "qwen", "Qwen"
    SMOLLM = "smollm", "SmolLM"
    OTHER = "other", "Other"


class LocalModelStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DOWNLOADING = "downloading", "Downloading"
    VERIFYING = "verifying", "Verifying"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    MISSING = "missing", "File missing"


# A download in one of these is owned by a task; the others wait for an admin.
DOWNLOAD_ACTIVE = (LocalModelStatus.QUEUED, LocalModelStatus.DOWNLOADING, LocalModelStatus.VERIFYING)
# A download that stopped here may be resumed from its partial file.
DOWNLOAD_RESUMABLE = (LocalModelStatus.FAILED, LocalModelStatus.CANCELLED, LocalModelStatus.MISSING)


class ModelAction(StrEnum):
    """What an admin may do with an installed (or arriving) model: the hub's buttons."""

    RESUME = "resume"
    CANCEL = "cancel"
    DELETE = "delete"
    MAKE_DEFAULT = "make_default"
    CONFIGURE = "configure"
    HEALTH_RESET = "health_reset"


class ModelSource(models.TextChoices):
    BUNDLED = "bundled", "Bundled with the app"
    HUB = "hub", "Hugging Face"
    PATH = "path", "File on the server"


# The most replies one loaded model may write at once (LocalModel.parallel_replies and the
# LOCAL_PARALLEL_REPLIES setting): each takes a context of its own.
PARALLEL_REPLIES_MAX = 16


class LocalModel(models.Model):
    """A GGUF model of this instance: installed (``ready``) or on its way there.

    Only a ``ready`` model is offered to people or loaded by a worker: a download becomes
    ready once its sha256 matched the hub's and its GGUF header was read.
    """

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=120)
    family = models.CharField(max_length=20, choices=ModelFamily.choices, default=ModelFamily.OTHER)
    source = models.CharField(max_length=10, choices=ModelSource.choices, default=ModelSource.HUB)
    hf_repo = models.CharField("Hugging Face repository", max_length=200, blank=True)
    hf_file = models.CharField("file in the repository", max_length=300, blank=True)
    # The commit the file is taken from: pinned by the catalog, or the one the hub served
    # first, so a resumed download continues the same file.
    hf_revision = models.CharField(max_length=64, blank=True, default="main")
    license = models.CharField(max_length=40, blank=True)
    file_path = models.CharField(max_length=1024, blank=True)
    # Of the model's files together: the GGUF and, for a vision model, its projector.
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)

    # A vision model's projector (llama.cpp's "mmproj" GGUF), from the same repository and
    # revision: it turns an image into tokens the model reads. Fetched, verified, installed
    # and deleted together with the model file, as one model.
    hf_projector_file = models.CharField("projector file in the repository", max_length=300, blank=True)
    projector_path = models.CharField(max_length=1024, blank=True)
    projector_size_bytes = models.BigIntegerField(default=0)
    projector_sha256 = models.CharField(max_length=64, blank=True)

    # From the file's GGUF header.
    architecture = models.CharField(max_length=40, blank=True)
    parameter_count = models.BigIntegerField(default=0)
    quantization = models.CharField(max_length=20, blank=True)
    context_length = models.PositiveIntegerField(default=2048)
    kv_bytes_per_token = models.PositiveIntegerField(default=0)
    chat_template = models.TextField(blank=True)

    # Settings an admin may change; empty means the instance's default (LLAMA_*, LOCAL_*).
    n_ctx = models.PositiveIntegerField("context size", null=True, blank=True)
    n_gpu_layers = models.IntegerField("GPU layers", null=True, blank=True)
    n_threads = models.PositiveSmallIntegerField("threads", null=True, blank=True)
    parallel_replies = models.PositiveSmallIntegerField(
        "replies at once",
        null=True,
        blank=True,
        help_text="Replies written together, 1 to 16; each takes memory for its context. "
        "Vision models write one at a time. Empty: LOCAL_PARALLEL_REPLIES.",
    )
    chat_template_override = models.TextField("chat template override", blank=True)

    status = models.CharField(max_length=20, choices=LocalModelStatus.choices, default=LocalModelStatus.READY)
    downloaded_bytes = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    # Written with every progress update: a download whose worker died stops moving it.
    progress_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # Crashes of the model runtime while this model was in use; reset by a reply that ends well.
    runtime_crashes = models.PositiveIntegerField(default=0)
    last_crash = models.CharField(max_length=200, blank=True)  # "signal 11 (SIGSEGV)"
    # Set when it kept crashing, or no configuration runs on this machine: refused until an
    # admin checks it again.
    unhealthy_reason = models.TextField(blank=True)
    is_bundled = models.BooleanField(default=False)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    # A download's life. The download task, Cancel, Resume and the check for dead workers
    # race for the same row, so every move is a compare-and-set made through
    # ``LocalModel.objects`` (``transition``, ``update_while``, ``fail_stale``).
    STATES = StateMachine(
        {
            LocalModelStatus.QUEUED: frozenset(
                {LocalModelStatus.DOWNLOADING, LocalModelStatus.CANCELLED, LocalModelStatus.FAILED}
            ),
            LocalModelStatus.DOWNLOADING: frozenset(
                {LocalModelStatus.VERIFYING, LocalModelStatus.CANCELLED, LocalModelStatus.FAILED}
            ),
            LocalModelStatus.VERIFYING: frozenset({LocalModelStatus.READY, LocalModelStatus.FAILED}),
            **{status: frozenset({LocalModelStatus.QUEUED}) for status in DOWNLOAD_RESUMABLE},
        }
    )
    objects = StatefulQuerySet.as_manager()

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_local_model"
            )
        ]
        permissions = [("manage_models", "Can install, configure and delete local models")]

    def __str__(self) -> str:
        return self.name

    @property
    def model_id(self) -> str:
        """The id the chat uses for this model (``local:<slug>``)."""
        return f"local:{self.slug}"

    @property
    def is_ready(self) -> bool:
        return self.status == LocalModelStatus.READY

    @property
    def sees_images(self) -> bool:
        """Whether it reads images: its projector is installed beside it."""
        return bool(self.projector_path)

    @property
    def is_downloading(self) -> bool:
        return self.status in DOWNLOAD_ACTIVE

    def refusal_of(self, action: ModelAction) -> Refusal | None:
        """Why the model does not allow ``action`` now, or None when it does: the one place
        that decides, for the hub's buttons (``actions``) and its services alike."""
        name = self.name
        match action:
            case ModelAction.RESUME if self.source != ModelSource.HUB:
                return Refusal("not_downloadable", f"{name} is not downloaded from a hub.")
            case ModelAction.RESUME if self.is_downloading:
                return Refusal("downloading", f"{name} is already downloading.")
            case ModelAction.RESUME if self.status not in DOWNLOAD_RESUMABLE:
                return Refusal("already_installed", f"{name} is already installed.")
            case ModelAction.CANCEL if self.status == LocalModelStatus.VERIFYING:
                return Refusal("verifying", f"{name} is downloaded and being verified: too late to cancel.")
            case ModelAction.CANCEL if self.status not in self.STATES.sources_of(LocalModelStatus.CANCELLED):
                return Refusal("not_downloading", f"{name} is not downloading.")
            case ModelAction.DELETE if self.is_bundled:
                return Refusal("bundled", "The bundled model ships with the app and cannot be deleted.")
            case ModelAction.DELETE if self.is_downloading:
                return Refusal("downloading", f"{name} is downloading: cancel the download first.")
            case ModelAction.MAKE_DEFAULT | ModelAction.CONFIGURE if not self.is_ready:
                return Refusal("not_ready", f"{name} is not installed yet.")
            case ModelAction.MAKE_DEFAULT if self.is_default:
                return Refusal("already_default", f"New chats already start with {name}.")
            case ModelAction.HEALTH_RESET if not self.unhealthy_reason:
                return Refusal("not_switched_off", f"{name} is not switched off.")
        return None

    def action_check(self, action: ModelAction) -> None:
        """Raises the ``Refusal`` of an action the model does not allow now."""
        refusal = self.refusal_of(action)
        if refusal is not None:
            raise refusal

    @property
    def actions(self) -> frozenset[ModelAction]:
        return frozenset(action for action in ModelAction if self.refusal_of(action) is None)

    @property
    def source_label(self) -> str:
        if self.source == ModelSource.HUB:
            return f"{self.hf_repo}/{self.hf_file}"
        return self.file_path


class HubSettings(SingletonModel):
    """The instance's settings for the model hub."""

    # For gated or private repositories.
    access_token_encrypted = EncryptedTextField()
    access_token_hint = models.CharField(max_length=20, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "hub settings"
        verbose_name_plural = "hub settings"

    def __str__(self) -> str:
        return "Model hub settings"


class SpeechModel(models.Model):
    """A Whisper model for voice input downloaded from the hub (faster-whisper's CTranslate2
    folder: ``catalog.WHISPER_FILES``). The one ``in_use`` transcribes every recording made
    on the instance; with none, the bundled tiny.en does. Usable only once ``ready``: every
    file downloaded and checked against the hub's sha256."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=120)
    hf_repo = models.CharField("Hugging Face repository", max_length=200)
    hf_revision = models.CharField(max_length=64, default="main")
    multilingual = models.BooleanField(default=False)
    folder = models.CharField(max_length=1024, blank=True)  # set once ready
    # Queued, downloading, verifying, ready or failed, as a GGUF model's download.
    status = models.CharField(max_length=20, choices=LocalModelStatus.choices, default="queued")
    size_bytes = models.BigIntegerField(default=0)
    downloaded_bytes = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)  # a download that stops moving is stale
    in_use = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["in_use"], condition=models.Q(in_use=True), name="one_speech_model_in_use"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_ready(self) -> bool:
        return self.status == LocalModelStatus.READY

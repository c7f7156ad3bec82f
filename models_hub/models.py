from __future__ import annotations

from django.conf import settings
from django.db import models

from localai_site.core.crypto import EncryptedTextField
from localai_site.core.singleton import SingletonModel


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


class ModelSource(models.TextChoices):
    BUNDLED = "bundled", "Bundled with the app"
    HUB = "hub", "Hugging Face"
    PATH = "path", "File on the server"


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
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)

    # From the file's GGUF header.
    architecture = models.CharField(max_length=40, blank=True)
    parameter_count = models.BigIntegerField(default=0)
    quantization = models.CharField(max_length=20, blank=True)
    context_length = models.PositiveIntegerField(default=2048)
    kv_bytes_per_token = models.PositiveIntegerField(default=0)
    chat_template = models.TextField(blank=True)

    # Settings an admin may change; empty means the instance's default (LLAMA_*).
    n_ctx = models.PositiveIntegerField("context size", null=True, blank=True)
    n_gpu_layers = models.IntegerField("GPU layers", null=True, blank=True)
    n_threads = models.PositiveSmallIntegerField("threads", null=True, blank=True)
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
    def is_downloading(self) -> bool:
        return self.status in DOWNLOAD_ACTIVE

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

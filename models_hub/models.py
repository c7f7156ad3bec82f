from __future__ import annotations

from django.db import models


class ModelFamily(models.TextChoices):
    LLAMA = "llama", "Llama"
    GEMMA = "gemma", "Gemma"
    QWEN = "qwen", "Qwen"
    SMOLLM = "smollm", "SmolLM"
    OTHER = "other", "Other"


class LocalModelStatus(models.TextChoices):
    READY = "ready", "Ready"
    MISSING = "missing", "File missing"


class LocalModel(models.Model):
    """A GGUF file on this instance that the local workers can run."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=120)
    family = models.CharField(max_length=20, choices=ModelFamily.choices, default=ModelFamily.OTHER)
    file_path = models.CharField(max_length=1024)
    size_bytes = models.BigIntegerField(default=0)
    context_length = models.PositiveIntegerField(default=2048)
    status = models.CharField(max_length=20, choices=LocalModelStatus.choices, default=LocalModelStatus.READY)
    is_bundled = models.BooleanField(default=False)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_local_model"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def model_id(self) -> str:
        """The id the chat uses for this model (``local:<slug>``)."""
        return f"local:{self.slug}"

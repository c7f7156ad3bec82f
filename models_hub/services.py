from __future__ import annotations

from django.db import transaction

from .bundled import BUNDLED_CONTEXT, BUNDLED_NAME, BUNDLED_SLUG, bundled_model_path
from .models import LocalModel, LocalModelStatus, ModelFamily


@transaction.atomic
def bundled_model_register() -> LocalModel:
    """Registers (or re-points, after an upgrade) the bundled model; default if none is."""
    path = bundled_model_path()
    model, _ = LocalModel.objects.update_or_create(
        slug=BUNDLED_SLUG,
        defaults={
            "name": BUNDLED_NAME,
            "family": ModelFamily.SMOLLM,
            "file_path": str(path),
            "size_bytes": path.stat().st_size,
            "context_length": BUNDLED_CONTEXT,
            "status": LocalModelStatus.READY,
            "is_bundled": True,
        },
    )
    if not LocalModel.objects.filter(is_default=True).exists():
        model.is_default = True
        model.save(update_fields=["is_default"])
    return model

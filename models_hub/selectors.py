from __future__ import annotations

from .models import LocalModel, LocalModelStatus


def local_models_ready() -> list[LocalModel]:
    return list(LocalModel.objects.filter(status=LocalModelStatus.READY))


def local_model_default() -> LocalModel | None:
    ready = LocalModel.objects.filter(status=LocalModelStatus.READY)
    return ready.filter(is_default=True).first() or ready.first()


def local_model_get(*, slug: str) -> LocalModel | None:
    return LocalModel.objects.filter(slug=slug, status=LocalModelStatus.READY).first()

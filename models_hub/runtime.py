"""llama.cpp models held in this process's memory (a local worker, or the embedded server).

Loading a GGUF takes time and memory, so a model is loaded on first use and kept.
llama.cpp contexts are not thread-safe: one generation at a time per loaded model.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from llama_cpp import Llama


@dataclass(frozen=True, slots=True)
class LoadSpec:
    path: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int


class LoadedModel:
    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self.lock = threading.Lock()


_loaded: dict[LoadSpec, LoadedModel] = {}
_loading_lock = threading.Lock()


def load_spec_for(*, path: str, context_length: int) -> LoadSpec:
    return LoadSpec(
        path=path,
        n_ctx=min(context_length, settings.LLAMA_CONTEXT),
        n_threads=settings.LLAMA_THREADS,
        n_gpu_layers=settings.LLAMA_GPU_LAYERS,
    )


def loaded_model_get(spec: LoadSpec) -> LoadedModel:
    with _loading_lock:
        loaded = _loaded.get(spec)
        if loaded is None:
            from llama_cpp import Llama

            # One model per process until the hub's memory-budgeted cache lands.
            _loaded.clear()
            llama = Llama(
                model_path=spec.path,
                n_ctx=spec.n_ctx,
                n_threads=spec.n_threads,
                n_threads_batch=spec.n_threads,
                n_gpu_layers=spec.n_gpu_layers,
                verbose=False,
            )
            loaded = _loaded[spec] = LoadedModel(llama)
        return loaded


def _forget_after_fork() -> None:
    # A forked child (a test server, a pre-forking web server) must load its own copies:
    # llama.cpp's threads and locks do not survive fork.
    global _loading_lock
    _loading_lock = threading.Lock()
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

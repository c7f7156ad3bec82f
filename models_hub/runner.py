"""The model runner: a child process that holds llama.cpp models and writes replies with them.

Only this process imports llama.cpp (this module, and ``batching`` and ``tokenizing``, which
it imports). A native fault in there (an instruction the CPU advertises but does not allow, a
malformed file, the kernel's OOM killer) ends this process and nothing else: the supervisor
(``models_hub.supervisor``) sees the pipe close, fails the replies in flight and starts another
runner. It imports no Django; each request carries what it needs (``models_hub.runner_protocol``).

Loading a GGUF takes time, so a model is loaded on first use and kept while the loaded models
fit the memory budget: loading one more unloads the least recently used idle ones, a model in
use is never unloaded, and one idle for the request's ``idle_unload_s`` (or whose file is gone)
is unloaded by a janitor thread.

A text model writes up to ``LoadSpec.parallel`` replies at once, decoded together by its
``models_hub.batching.Decoder``, whose slots keep each conversation's evaluated prompt for its
next turn. A conversation whose slot is needed for another is copied out and kept here under
its ``prompt_cache_key`` (``PromptStore``), and copied back on its next turn. Kept prompts
count against the memory budget: they are the first to go when a model needs room, least
recently used first, and go when idle as long as a model would. Derived from a person's
words, they also go, with the slot that holds one, when the conversation is deleted
("forget"). A vision model writes one reply at a time and keeps nothing: its handler
evaluates every prompt afresh, and its context is emptied after each reply.

    python -m models_hub.runner serve FD   serve requests on the socket FD (the supervisor)
    python -m models_hub.runner probe      one load, prompt and decode, JSON in on stdin, out on stdout
    python -m models_hub.runner info       the llama.cpp build, as JSON
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, TypeVar

from .runner_protocol import (
    ERROR_CONTEXT,
    ERROR_FAILED,
    ERROR_MEMORY,
    FAULT_ENV,
    KEY_CACHE_GGML_TYPE,
    BuildInfo,
    GenerateRequest,
    Limits,
    LoadSpec,
    RuntimeConfig,
    TokenizeRequest,
)

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from .batching import Decoder, PromptState

MIB = 1024 * 1024
# Deleted conversations remembered, so that a reply still being written for one when it was
# deleted keeps nothing of it afterwards.
_FORGOTTEN_KEPT = 10_000


class ModelMemoryError(Exception):
    """The model does not fit the memory budget."""


class ProjectorError(Exception):
    """A vision model's projector that llama.cpp cannot use with the model."""


class ImageRefused(Exception):
    """An image handed to the runner as something other than a data URI."""


def _fault(stage: str, config: RuntimeConfig) -> None:
    """Crash as broken hardware would, when a test asked for it (``FAULT_ENV``). Stage
    "prompt" is the evaluation of a prompt, always more than one token here."""
    fault = os.environ.get(FAULT_ENV, "")
    batched_repacked = config.use_extra_bufts and config.n_ubatch > 1
    if (fault == "load" and stage == "load") or (
        fault == "repacked-batch" and stage == "prompt" and batched_repacked
    ):
        os.kill(os.getpid(), signal.SIGSEGV)


@contextlib.contextmanager
def _default_params(config: RuntimeConfig, sequences: int) -> Iterator[None]:
    # llama-cpp-python's Llama() takes no argument for ``use_extra_bufts`` nor for the number
    # of sequences: it fills the structs from llama_model_default_params() and
    # llama_context_default_params() inside __init__. Loads are serialised by
    # ModelCache._lock, so swapping those functions for the duration of one load is safe.
    import llama_cpp

    model_defaults = llama_cpp.llama_cpp.llama_model_default_params
    context_defaults = llama_cpp.llama_cpp.llama_context_default_params

    def model_params():
        params = model_defaults()
        params.use_extra_bufts = config.use_extra_bufts
        return params

    def context_params():
        params = context_defaults()
        params.n_seq_max = sequences
        params.kv_unified = False  # each sequence its own window: conversations share little
        return params

    llama_cpp.llama_cpp.llama_model_default_params = model_params
    llama_cpp.llama_cpp.llama_context_default_params = context_params
    try:
        yield
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = model_defaults
        llama_cpp.llama_cpp.llama_context_default_params = context_defaults


def load(spec: LoadSpec, config: RuntimeConfig) -> Llama:
    """The model with ``config``; a text model's context has ``spec.parallel`` sequences of
    ``spec.n_ctx`` tokens each."""
    from llama_cpp import Llama

    _fault("load", config)
    spec = config.applied_to(spec)
    sequences = 1 if spec.projector_path else max(1, spec.parallel)
    with _default_params(config, sequences):
        llama = Llama(
            model_path=spec.path,
            n_ctx=spec.n_ctx * sequences,
            n_threads=spec.n_threads,
            n_threads_batch=spec.n_threads,
            n_gpu_layers=spec.n_gpu_layers,
            n_ubatch=config.n_ubatch,
            type_k=KEY_CACHE_GGML_TYPE,
            verbose=False,
        )
    if spec.projector_path:
        llama.chat_handler = _vision_handler(llama, spec)
    return llama


T = TypeVar("T")


def _on_a_thread_of_its_own(function: Callable[..., T], *args) -> T:
    """``function(*args)`` on a thread that ends with it. Loading repacks weights with OpenMP,
    whose threads live as long as the thread that started them: kept by a request's thread,
    they would slow every decoding step of its reply (batching.Decoder._run says why)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, function(*args)))
        except BaseException as exc:  # noqa: BLE001 - raised again below, on the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="runner-load")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def chat_formatter(llama: Llama, spec: LoadSpec) -> Jinja2ChatFormatter:
    """How a text model's prompt is written: the admin's template, else the file's own."""
    from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

    template = spec.chat_template or llama.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE
    # The template's BOS/EOS tokens come from the vocabulary, known once loaded.
    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llama.detokenize([eos], special=True).decode(errors="ignore"),
        bos_token=llama.detokenize([bos], special=True).decode(errors="ignore"),
        stop_token_ids=[eos],
    )


DATA_URI_PREFIX = "data:image/"


def _vision_handler(llama: Llama, spec: LoadSpec):
    """llama.cpp's multimodal path (mtmd) with the model's projector: each image part of a
    message becomes the image's tokens. The prompt is written with the model's own chat
    template (or the admin's override), as for text."""
    from llama_cpp.llama_chat_format import MTMDChatHandler

    class VisionHandler(MTMDChatHandler):
        def _get_chat_template(self, llama_model: Llama) -> str:
            return spec.chat_template or super()._get_chat_template(llama_model)

        def load_image(self, image_url: str) -> bytes:
            # The handler fetches any other string with urlopen: a path or a URL in a
            # message must never make the runner read a file or reach the network.
            if not image_url.startswith(DATA_URI_PREFIX) or ";base64," not in image_url:
                raise ImageRefused("an image reached the model runner as something other than a data URI")
            return super().load_image(image_url)

    handler = VisionHandler(
        clip_model_path=spec.projector_path, verbose=False, use_gpu=spec.n_gpu_layers != 0
    )
    try:
        handler._init_mtmd_context(llama)  # now, so that a projector that does not fit fails the load
    except ValueError as exc:
        llama.close()
        raise ProjectorError(f"The image projector cannot be used with this model: {exc}") from None
    return handler


def build_info() -> BuildInfo:
    import llama_cpp

    return BuildInfo(
        llama_cpp_version=llama_cpp.__version__,
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        system_info=llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    )


ModelKey = tuple[LoadSpec, RuntimeConfig]


class LoadedModel:
    def __init__(self, key: ModelKey, llama: Llama, prompts: _ModelPrompts) -> None:
        self.key = key
        self.spec = key[0]
        self.llama = llama
        self.prompts = prompts
        self.users = 0  # generations and token counts holding it; > 0: never unloaded
        self.replies = 0  # generations asked of it: being written, or waiting for a slot
        self.last_used = time.monotonic()
        # A text model's replies are decoded together; a vision model's one at a time.
        self.decoder: Decoder | None = None
        self.lock = threading.Lock()  # held while a vision model generates
        from .tokenizing import Tokenizer

        self.tokenizer = Tokenizer(llama)
        if not self.spec.projector_path:
            from .batching import Decoder

            self.decoder = Decoder(
                llama,
                chat_formatter(llama, self.spec),
                self.tokenizer,
                max(1, self.spec.parallel),
                prompts,
                batches_sequences=key[1].batches_sequences,
            )

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()
        self.llama.close()


class _ModelPrompts:
    """One loaded model's side of the kept prompts (``batching.PromptStore``)."""

    def __init__(self, cache: ModelCache, key: ModelKey, budget: int) -> None:
        self._cache, self._key, self.budget = cache, key, budget

    def prompt_room(self) -> int:
        return self._cache.prompt_room(self.budget)

    def prompt_keep(self, cache_key: str, state: PromptState) -> None:
        self._cache.prompt_keep(self._key, cache_key, state, self.budget)

    def prompt_take(self, cache_key: str) -> PromptState | None:
        return self._cache.prompt_take(self._key, cache_key)

    def is_forgotten(self, cache_key: str) -> bool:
        return self._cache.is_forgotten(cache_key)


class ModelCache:
    """The loaded models of this runner, least recently used first."""

    def __init__(self, on_change=lambda: None) -> None:
        self._loaded: OrderedDict[ModelKey, LoadedModel] = OrderedDict()
        # Conversations' prompts kept for their next turn, least recently used first.
        self._states: OrderedDict[tuple[ModelKey, str], PromptState] = OrderedDict()
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.RLock()  # re-entered by ``on_change``, which reads the summary
        self._on_change = on_change
        self.idle_unload_s = 0
        self.limits_changed = threading.Event()  # wakes the janitor to a new idle limit

    def _unload(self, key: ModelKey) -> None:
        """Call with the lock held."""
        self._loaded.pop(key).close()
        for state_key in [k for k in self._states if k[0] == key]:
            del self._states[state_key]
        self._on_change()

    def _make_room(self, spec: LoadSpec, budget: int) -> None:
        """Unload what must go for ``spec`` to fit; call with the lock held."""
        for key in [k for k, m in self._loaded.items() if k[0].path == spec.path and not m.users]:
            self._unload(key)  # the same file with other settings: they changed
        if spec.memory_bytes > budget:
            raise ModelMemoryError(
                f"This model needs about {_size(spec.memory_bytes)} of memory; this worker may use "
                f"{_size(budget)} (LOCAL_MODEL_MEMORY_MB). Lower its context size or pick a smaller model."
            )
        self._states_drop(budget - spec.memory_bytes)  # cheaper to evaluate again than a model to load
        for key, loaded in list(self._loaded.items()):
            if self._used() + spec.memory_bytes <= budget:
                return
            if not loaded.users:
                self._unload(key)
        if self._used() + spec.memory_bytes > budget:
            raise ModelMemoryError(
                "The models in use on this worker fill its memory budget; "
                "try again when their replies finish."
            )

    def _used(self) -> int:
        return self._models_bytes() + self._states_bytes()

    def _models_bytes(self) -> int:
        return sum(spec.memory_bytes for spec, _ in self._loaded)

    def _states_bytes(self) -> int:
        return sum(state.nbytes for state in self._states.values())

    def _states_drop(self, until_used: int) -> None:
        """Drop kept prompts, least recently used first, until at most ``until_used`` bytes
        are in use; call with the lock held."""
        used = self._used()
        while self._states and used > until_used:
            _, state = self._states.popitem(last=False)
            used -= state.nbytes

    @contextlib.contextmanager
    def in_use(
        self, spec: LoadSpec, config: RuntimeConfig, limits: Limits, reply: bool = False
    ) -> Iterator[LoadedModel]:
        key = (spec, config)
        with self._lock:
            if limits.idle_unload_s != self.idle_unload_s:
                self.idle_unload_s = limits.idle_unload_s
                self.limits_changed.set()
            loaded = self._loaded.get(key)
            if loaded is None:
                self._make_room(spec, limits.memory_budget)
                prompts = _ModelPrompts(self, key, limits.memory_budget)
                llama = _on_a_thread_of_its_own(load, spec, config)
                loaded = self._loaded[key] = LoadedModel(key, llama, prompts)
            loaded.prompts.budget = limits.memory_budget
            self._loaded.move_to_end(key)
            loaded.users += 1
            loaded.replies += reply
        self._on_change()
        try:
            yield loaded
        finally:
            with self._lock:
                loaded.users -= 1
                loaded.replies -= reply
                loaded.last_used = time.monotonic()
            self._on_change()

    # --- Kept prompts (batching.PromptStore, for each loaded model) --------------------

    def prompt_room(self, budget: int) -> int:
        with self._lock:
            return budget - self._models_bytes()

    def prompt_keep(self, key: ModelKey, cache_key: str, state: PromptState, budget: int) -> None:
        with self._lock:
            if cache_key in self._forgotten or key not in self._loaded:
                return
            self._states_drop(budget - state.nbytes)
            if self._used() + state.nbytes <= budget:
                self._states[(key, cache_key)] = state
        self._on_change()

    def prompt_take(self, key: ModelKey, cache_key: str) -> PromptState | None:
        with self._lock:
            state = self._states.pop((key, cache_key), None)
        if state is not None:
            self._on_change()
        return state

    def is_forgotten(self, cache_key: str) -> bool:
        with self._lock:
            return cache_key in self._forgotten

    def forget(self, cache_keys: list[str]) -> None:
        """Drop what is kept of these conversations: their kept prompts now, and the slots
        that hold one as soon as no reply is being written in them."""
        with self._lock:
            for cache_key in cache_keys:
                self._forgotten[cache_key] = None
                self._forgotten.move_to_end(cache_key)
            while len(self._forgotten) > _FORGOTTEN_KEPT:
                self._forgotten.popitem(last=False)
            for state_key in [k for k in self._states if k[1] in self._forgotten]:
                del self._states[state_key]
            for model in self._loaded.values():
                model.tokenizer.forget(cache_keys)
            decoders = [m.decoder for m in self._loaded.values() if m.decoder is not None]
        for decoder in decoders:
            decoder.forget()
        self._on_change()

    def unload_idle(self, now: float | None = None) -> int:
        """Unload models idle for longer than ``idle_unload_s``, and those whose file is gone;
        drop prompts kept for as long."""
        now = time.monotonic() if now is None else now
        unloaded = 0
        with self._lock:
            if self.idle_unload_s:
                limit = self.idle_unload_s
                expired = [k for k, state in self._states.items() if now - state.last_used >= limit]
                for state_key in expired:
                    del self._states[state_key]
                if expired:
                    self._on_change()
            for key, loaded in list(self._loaded.items()):
                if loaded.users:
                    continue
                idle_too_long = self.idle_unload_s and now - loaded.last_used >= self.idle_unload_s
                if idle_too_long or not os.path.exists(key[0].path):
                    self._unload(key)
                    unloaded += 1
        return unloaded

    def summary(self) -> list[dict]:
        now = time.monotonic()
        with self._lock:
            return [
                {
                    "slug": spec.slug,
                    "memory_bytes": spec.memory_bytes,
                    "n_ctx": spec.n_ctx,
                    "config": config.label,
                    "in_use": loaded.users > 0,
                    "idle_s": 0 if loaded.users else round(now - loaded.last_used),
                    **self._prompts_summary(loaded),
                }
                for (spec, config), loaded in self._loaded.items()
            ]

    def _prompts_summary(self, loaded: LoadedModel) -> dict:
        """Its slots, the replies it is writing and those waiting for a slot, how many
        conversations' prompts it holds (kept aside, or in its slots) and the bytes kept aside;
        call with the lock held."""
        kept = [state for (key, _), state in self._states.items() if key == loaded.key]
        parallel = 1 if loaded.decoder is None else loaded.decoder.parallel
        live = 0 if loaded.decoder is None else loaded.decoder.conversations_held()
        return {
            "parallel": parallel,
            # llama.cpp's passes a step over the replies being written: 1 while they sit side by side.
            "writing_runs": 0 if loaded.decoder is None else loaded.decoder.writing_runs(),
            "active": min(loaded.replies, parallel),
            "waiting": max(loaded.replies - parallel, 0),
            "prompts_held": len(kept) + live,
            "prompts_kept_bytes": sum(s.nbytes for s in kept),
        }

    def close(self) -> None:
        # Free llama.cpp memory while the interpreter is still whole: left to garbage
        # collection at exit, llama-cpp-python's finalisers fail noisily.
        with self._lock:
            for loaded in self._loaded.values():
                loaded.close()
            self._loaded.clear()


def _size(n: int) -> str:
    return f"{n / MIB:.1f}\u00a0MB"


def _context_clear(llama: Llama) -> None:
    """Nothing of any conversation left in the context: its tokens and KV cache zeroed."""
    llama.reset()
    llama._ctx.kv_cache_clear()
    llama.input_ids.fill(0)


def generate_one(
    llama: Llama, request: GenerateRequest, emit: Callable[[str], None], cancelled
) -> tuple[int, int, int]:
    """A vision model's reply, through its chat handler: (prompt tokens, completion tokens, 0)."""
    finish_reason = None
    chunks = llama.create_chat_completion(
        messages=request.messages,
        stream=True,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        seed=request.seed,
        top_p=0.95 if request.top_p is None else request.top_p,  # llama-cpp-python's default
        stop=list(request.stop) or None,
    )
    prompt_tokens: int | None = None
    with contextlib.closing(chunks):
        for chunk in chunks:
            if prompt_tokens is None:
                prompt_tokens = llama.n_tokens  # the prompt is evaluated, the first token not yet
            choice = chunk["choices"][0]
            finish_reason = choice.get("finish_reason") or finish_reason
            text = choice["delta"].get("content")
            if text:
                emit(text)
            if cancelled():
                break
    if prompt_tokens is None:
        return 0, 0, 0
    # Every generated token but the newest is evaluated into the context. When the model
    # chose to stop, its newest token is the end-of-turn marker, not part of the reply.
    evaluated = llama.n_tokens - prompt_tokens
    return prompt_tokens, max(evaluated + (0 if finish_reason == "stop" else 1), 0), 0


class Runner:
    """Serves the supervisor's requests, each on a thread of its own."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self.models = ModelCache(on_change=lambda: self._send("state", self.models.summary()))

    def _send(self, *message: object) -> None:
        with self._send_lock:
            self._conn.send(message)

    def serve(self) -> None:
        self._send("ready", build_info())
        threading.Thread(target=self._janitor, name="runner-janitor", daemon=True).start()
        while True:
            try:
                kind, request_id, *rest = self._conn.recv()
            except (EOFError, OSError):
                break  # the supervisor is gone: so is the reason to live
            if kind == "cancel":
                self._cancelled.add(request_id)
            elif kind == "forget":
                # Here, not on a thread: no request read after this one finds what it forgets.
                self.models.forget(rest[0])
            elif kind == "summary":
                self._send("result", request_id, self.models.summary())
            else:
                handler = self._generate if kind == "generate" else self._tokenize
                args = (handler, request_id, rest[0])
                threading.Thread(target=self._answer, args=args, daemon=True).start()
        self.models.close()

    def _answer(self, handler, request_id: int, request) -> None:
        try:
            handler(request_id, request)
        except ModelMemoryError as exc:
            self._send("error", request_id, ERROR_MEMORY, str(exc))
        except ValueError as exc:  # llama-cpp-python's word for "prompt too long"
            self._send("error", request_id, ERROR_CONTEXT, str(exc))
        except Exception as exc:
            self._send("error", request_id, ERROR_FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self._cancelled.discard(request_id)

    def _generate(self, request_id: int, request: GenerateRequest) -> None:
        def emit(text: str) -> None:
            self._send("token", request_id, text)

        def cancelled() -> bool:
            return request_id in self._cancelled

        with self.models.in_use(request.spec, request.config, request.limits, reply=True) as loaded:
            _fault("prompt", request.config)
            if loaded.decoder is not None:
                counts = loaded.decoder.generate(request, emit, cancelled)
            else:
                with loaded.lock:
                    try:
                        counts = generate_one(loaded.llama, request, emit, cancelled)
                    finally:
                        _context_clear(loaded.llama)  # nothing of this conversation stays
        self._send("done", request_id, *counts)

    def _tokenize(self, request_id: int, request: TokenizeRequest) -> None:
        with self.models.in_use(request.spec, request.config, request.limits) as loaded:
            counts = [loaded.tokenizer.count(text) for text in request.texts]
        self._send("result", request_id, counts)

    def _janitor(self) -> None:
        while True:
            idle_unload_s = self.models.idle_unload_s
            self.models.limits_changed.wait(max(1.0, min(5.0, idle_unload_s / 4 or 5.0)))
            self.models.limits_changed.clear()
            with contextlib.suppress(Exception):
                self.models.unload_idle()


# Each timing is taken this many times and the fastest kept: a moment of another process's
# work (a browser on the same laptop) is not what the machine can do.
PROBE_ROUNDS = 2


def probe(spec: LoadSpec, config: RuntimeConfig, prompt_tokens: int, decode_tokens: int) -> dict:
    """Load ``spec`` with ``config``, evaluate a prompt of ``prompt_tokens`` and decode
    ``decode_tokens`` more, what a first reply does; then, for a model with several slots,
    decode as many again in every slot at once, what a busy model does. Timed."""
    import llama_cpp

    started = time.perf_counter()
    llama = load(spec, config)
    measured = {"load_s": round(time.perf_counter() - started, 3)}
    sentence = llama.tokenize(b" The quick brown fox jumps over the lazy dog.", add_bos=False)
    tokens = ([llama.token_bos()] + sentence * (prompt_tokens // len(sentence) + 1))[:prompt_tokens]
    tokens = tokens[: max(2, min(prompt_tokens, spec.n_ctx - 2 * decode_tokens - 1))]
    _fault("prompt", config)
    sequences = 1 if spec.projector_path else spec.parallel
    for _ in range(PROBE_ROUNDS):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama._ctx.ctx), True)
        llama.reset()
        for name, speed in _probe_round(llama, config, tokens, decode_tokens, sequences).items():
            measured[name] = max(measured.get(name, 0.0), round(speed, 1))
    llama.close()
    return measured


def _probe_round(
    llama: Llama, config: RuntimeConfig, tokens: list[int], decode_tokens: int, sequences: int
) -> dict:
    import llama_cpp

    started = time.perf_counter()
    llama.eval(tokens)
    evaluated = time.perf_counter()
    for _ in range(decode_tokens):
        llama.eval([int(llama.sample(temp=0.0))])
    decoded = time.perf_counter()
    speeds = {
        "prompt_tok_s": len(tokens) / max(evaluated - started, 1e-9),
        "decode_tok_s": decode_tokens / max(decoded - evaluated, 1e-9),
    }
    if sequences > 1:
        ctx, position = llama._ctx.ctx, llama.n_tokens
        memory = llama_cpp.llama_get_memory(ctx)
        for seq_id in range(1, sequences):  # every slot continues the same conversation
            llama_cpp.llama_memory_seq_cp(memory, 0, seq_id, -1, -1)
        # As batching.Decoder writes: every slot's token in one call, or one call per slot.
        groups = [list(range(sequences))] if config.batches_sequences else [[n] for n in range(sequences)]
        batch = llama_cpp.llama_batch_init(sequences, 0, 1)
        token = int(llama.sample(temp=0.0))  # fed again each step: the work is the same
        together = time.perf_counter()
        for step in range(decode_tokens):
            for group in groups:
                batch.n_tokens = len(group)
                for row, seq_id in enumerate(group):
                    batch.token[row], batch.pos[row] = token, position + step
                    batch.n_seq_id[row], batch.seq_id[row][0], batch.logits[row] = 1, seq_id, True
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed with every slot writing")
        elapsed = time.perf_counter() - together
        llama_cpp.llama_batch_free(batch)
        speeds["batched_tok_s"] = sequences * decode_tokens / max(elapsed, 1e-9)
    return speeds


def main(argv: list[str]) -> None:
    command = argv[0] if argv else ""
    if command == "serve":
        conn = Connection(int(argv[1]))
        Runner(conn).serve()
    elif command == "probe":
        request = json.load(sys.stdin)
        result = probe(
            LoadSpec(**request["spec"]),
            RuntimeConfig(**request["config"]),
            request["prompt_tokens"],
            request["decode_tokens"],
        )
        print(json.dumps(result), flush=True)
    elif command == "info":
        print(json.dumps(asdict(build_info())), flush=True)
    else:
        sys.exit("usage: python -m models_hub.runner serve FD | probe | info")


if __name__ == "__main__":
    main(sys.argv[1:])

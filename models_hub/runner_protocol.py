"""What the supervisor and the model runner say to each other.

Pure data, no Django and no llama.cpp, so both sides import it: how a model is loaded
(``LoadSpec``), the llama.cpp options the probe settled on for it (``RuntimeConfig``), and the
messages that cross the pipe. Every message is a tuple whose first item names its kind.

Host to runner:
    ("generate", id, GenerateRequest)    write a reply; answered by "token"… then "done"
    ("tokenize", id, TokenizeRequest)    count tokens; answered by "result"
    ("cancel", id)                       stop that generation after its current token
    ("forget", id, [prompt cache key…])  drop what is kept of those conversations; no answer
    ("summary", id)                      what is loaded; answered by "result"
Runner to host:
    ("ready", BuildInfo)                 sent once, when the runner can take requests
    ("token", id, text)
    ("done", id, prompt_tokens, completion_tokens, cached_tokens)
    ("result", id, value)
    ("error", id, kind, message)         kind: one of ERROR_KINDS
    ("state", summary)                   the loaded models changed (load, unload, in use)

Requests carry ids chosen by the host, and the runner answers each on its own, so one
runner can serve several streams at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# The runner process, started by the supervisor with one end of a socket pair.
RUNNER_MODULE = "models_hub.runner"
# Set in a runner's environment by tests only: makes it crash the way a broken build or machine does.
# "load": every model load; "repacked-batch": evaluating more than one token at a time with
# repacked weights, which is what llama.cpp's AMX kernels do when GCC 12 built them unfixed
# (scripts/gcc_amx_tile_fix.h).
FAULT_ENV = "LOCALAI_RUNNER_FAULT"
FAULTS = ("load", "repacked-batch")

# Keys are cached in 8 bits (ggml's Q8_0: 34 bytes for 32 values), values in 16. Attention over
# a long history then runs on int8 dot products: on a 2-core AVX-512 machine the bundled model
# reads 17 new tokens after 2,400 in about 120 ms instead of 150-175 (80 ms after 66 tokens
# either way), and a slot or a kept prompt takes a quarter less memory. Values stay f16: a
# quantized value cache needs flash attention, slower on these CPUs.
KEY_CACHE_GGML_TYPE = 8  # llama_cpp.GGML_TYPE_Q8_0
KV_CACHE_SHARE_OF_F16 = (34 / 32 / 2 + 1) / 2  # of f16 keys and values of the same size

ERROR_MEMORY = "memory"  # the model does not fit the memory budget
ERROR_CONTEXT = "context"  # the prompt does not fit the model's context window
ERROR_FAILED = "failed"  # anything else llama.cpp raised
ERROR_KINDS = (ERROR_MEMORY, ERROR_CONTEXT, ERROR_FAILED)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    slug: str
    path: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    chat_template: str  # an override of the file's own; "" keeps the file's
    memory_bytes: int
    projector_path: str = ""  # a vision model's mmproj file; "" for a model that reads text only
    # Replies the model writes at once (continuous batching, models_hub.batching): its context
    # holds this many sequences of ``n_ctx`` tokens each. A vision model writes one at a time.
    parallel: int = 1


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """llama.cpp options that decide whether a model survives on a machine, and how fast."""

    use_extra_bufts: bool = True  # repacked weights (AMX, AVX-512 and ARM kernels)
    n_ubatch: int = 512  # tokens evaluated in one step of a prompt
    n_threads: int | None = None  # None: the load spec's
    n_gpu_layers: int | None = None  # None: the load spec's

    @property
    def batches_sequences(self) -> bool:
        """Whether several replies' tokens go to llama.cpp in one call. With a micro-batch of
        one they do not: llama.cpp would still hand the repacked kernels one token per reply
        at once, which is what faults where the AMX kernels were miscompiled."""
        return self.n_ubatch > 1

    @property
    def label(self) -> str:
        parts = ["repacked weights" if self.use_extra_bufts else "no repacking"]
        if self.n_ubatch == 1:
            parts.append("micro-batch of one")
        if self.n_threads is not None:
            parts.append(f"{self.n_threads} thread{'s' if self.n_threads != 1 else ''}")
        if self.n_gpu_layers == 0:
            parts.append("no GPU offload")
        return ", ".join(parts)

    def applied_to(self, spec: LoadSpec) -> LoadSpec:
        """``spec`` with this configuration's thread and GPU overrides."""
        return replace(
            spec,
            n_threads=spec.n_threads if self.n_threads is None else self.n_threads,
            n_gpu_layers=spec.n_gpu_layers if self.n_gpu_layers is None else self.n_gpu_layers,
        )

    def as_dict(self) -> dict:
        return {
            "use_extra_bufts": self.use_extra_bufts,
            "n_ubatch": self.n_ubatch,
            "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers,
        }


DEFAULT_CONFIG = RuntimeConfig()


def config_candidates(spec: LoadSpec) -> list[RuntimeConfig]:
    """The configurations worth having, fastest first. Repacked weights with a micro-batch
    of one keep repacked generation speed where only batched evaluation faults."""
    on_cpu = [
        RuntimeConfig(),
        RuntimeConfig(n_ubatch=1),
        RuntimeConfig(use_extra_bufts=False),
        RuntimeConfig(use_extra_bufts=False, n_threads=1),
    ]
    if spec.projector_path:  # an image's tokens attend to each other: one micro-batch holds them all
        on_cpu = [config for config in on_cpu if config.n_ubatch > 1]
    if not spec.n_gpu_layers:
        return on_cpu
    return on_cpu + [replace(config, n_gpu_layers=0) for config in on_cpu]


@dataclass(frozen=True, slots=True)
class Limits:
    memory_budget: int  # bytes the loaded models may take together
    idle_unload_s: int  # 0: unload only to make room


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    spec: LoadSpec
    config: RuntimeConfig
    limits: Limits
    messages: list[dict]
    max_tokens: int
    temperature: float
    seed: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    # Names the conversation, opaquely, as "<person>.<conversation>": its evaluated prompt is
    # kept for its next turn under this key (runner.ModelCache.context_switch), and only the
    # same person's may start it. "" keeps nothing.
    prompt_cache_key: str = ""


@dataclass(frozen=True, slots=True)
class TokenizeRequest:
    spec: LoadSpec
    config: RuntimeConfig
    limits: Limits
    texts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuildInfo:
    llama_cpp_version: str
    gpu_offload: bool
    system_info: str  # llama.cpp's own line: the CPU features it was built for and uses

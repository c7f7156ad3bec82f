"""Which llama.cpp configuration a model gets on this machine, found by trying it.

A build or a machine can break the fast way of loading a model: llama.cpp's AMX kernels
compiled by GCC 12 without scripts/gcc_amx_tile_fix.h fault on the first prompt, and a virtual
machine may advertise CPU features it does not let a process use. So before a
model is first used here, a throwaway child process loads it, evaluates a prompt of a few
hundred tokens, decodes a few more, and decodes as many in every slot at once (each timing
taken twice, the faster kept: ``runner.PROBE_ROUNDS``), in each configuration worth having,
fastest first (``runner_protocol.config_candidates``), leaving out those that can only be
slower than one that survived. Repacked weights are always timed against plain ones:
repacking pays on AVX-512 and AMX, but on a CPU with AVX2 alone the two were within a few per
cent, plain ones ahead for several replies at once; where batches of repacked weights crash, a
micro-batch of one writes one reply fastest while plain weights may read prompts and write many
replies at once faster. ``best_of`` keeps the survivor that is never far behind.
The choice is remembered per model file, slots, llama.cpp build and CPU in
``<data dir>/runtime-probes.json``, so it is made once per machine, not once per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import util
from pathlib import Path

from django.conf import settings

from .runner_protocol import (
    DEFAULT_CONFIG,
    RUNNER_MODULE,
    BuildInfo,
    LoadSpec,
    RuntimeConfig,
    config_candidates,
)
from .supervisor import exit_description, supervisor

logger = logging.getLogger(__name__)

PROMPT_TOKENS = 300
PROBE_RULES = 2  # raised when the probe tries other configurations: each machine probes again
DECODE_TOKENS = 16
# The vector and matrix units llama.cpp has kernels for, widest last, with the CPU flags
# that advertise them.
FEATURE_FLAGS = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "AVX-512 VNNI": ("avx512_vnni",),
    "AVX-512 BF16": ("avx512_bf16",),
    "AMX": ("amx_tile", "amx_int8", "amx_bf16"),
}
_NOTABLE_FLAGS = {"avx", "fma", "f16c", "avx512bw"}.union(*FEATURE_FLAGS.values())


# Said where repacked weights crash on a CPU with AMX: the likeliest cause is the build.
AMX_BUILD_HINT = (
    "On a CPU with AMX, that is how llama.cpp fails when GCC 12 built it without"
    ' scripts/gcc_amx_tile_fix.h; "make llama-rebuild" compiles it again with the fix.'
)


class ProbeFailed(Exception):
    """No configuration survived: the model cannot run on this machine."""


@dataclass(frozen=True, slots=True)
class Attempt:
    label: str
    ok: bool
    outcome: str  # "prompt 300 tok/s, decode 190 tok/s, 4 at once 260 tok/s" or how the child died
    decode_tok_s: float | None = None
    prompt_tok_s: float | None = None
    batched_tok_s: float | None = None  # every slot writing at once, all together

    def speeds(self) -> tuple[float, ...]:
        """What it was timed at: reading a prompt, writing one reply, writing in every slot."""
        measured = (self.prompt_tok_s, self.decode_tok_s, self.batched_tok_s)
        return tuple(speed for speed in measured if speed is not None)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    key: str
    slug: str
    config: RuntimeConfig
    reason: str
    attempts: list[Attempt] = field(default_factory=list)
    probed_at: float = 0.0

    @property
    def label(self) -> str:
        return self.config.label

    def as_dict(self) -> dict:
        return {**asdict(self), "config": self.config.as_dict(), "label": self.label}

    @classmethod
    def from_dict(cls, data: dict) -> ProbeResult:
        return cls(
            key=data["key"],
            slug=data["slug"],
            config=RuntimeConfig(**data["config"]),
            reason=data["reason"],
            attempts=[Attempt(**attempt) for attempt in data["attempts"]],
            probed_at=data["probed_at"],
        )


@cache  # a process does not change CPUs
def _cpu_flags() -> list[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return sorted(set(line.partition(":")[2].split()))
    return []


def cpu_features() -> list[str]:
    """The CPU's flags that matter to llama.cpp (as the CPU advertises them)."""
    return [flag for flag in _cpu_flags() if flag in _NOTABLE_FLAGS]


def cpu_widest_unit(features: list[str]) -> str:
    """The widest unit named in ``features`` ("AMX", "AVX-512"…), for a one-word summary."""
    present = [name for name, flags in FEATURE_FLAGS.items() if set(flags) & set(features)]
    return present[-1] if present else "none of AVX2, AVX-512, AMX"


@cache  # a rebuild takes effect in new processes only
def llama_build_id() -> str:
    """The installed llama-cpp-python and its native libraries, without importing them:
    rebuilding with other flags gives another id."""
    spec = util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return "missing"
    from importlib.metadata import version

    libraries = sorted((Path(spec.origin).parent / "lib").glob("*.so*"))
    stats = [f"{lib.name}:{lib.stat().st_size}:{lib.stat().st_mtime_ns}" for lib in libraries]
    return f"{version('llama_cpp_python')}:{hashlib.sha256('|'.join(stats).encode()).hexdigest()[:12]}"


@cache
def _build_info(build_id: str) -> BuildInfo:
    done = subprocess.run(
        [sys.executable, "-m", RUNNER_MODULE, "info"], capture_output=True, text=True, timeout=60, check=True
    )
    return BuildInfo(**json.loads(done.stdout))


def build_info() -> BuildInfo:
    """What llama.cpp was built with, asked of a child process: importing it here would
    put native code in this process."""
    return _build_info(llama_build_id())


@cache
def machine_id() -> str:
    """This llama.cpp build on this CPU."""
    return hashlib.sha256(f"{llama_build_id()}\n{' '.join(_cpu_flags())}".encode()).hexdigest()[:16]


def probe_key(spec: LoadSpec) -> str:
    stat = os.stat(spec.path)
    parts = [spec.path, str(stat.st_size), str(stat.st_mtime_ns), str(spec.n_threads), str(spec.n_gpu_layers)]
    # The slots decide which configuration is fastest, a projector which ones may run.
    parts += [str(spec.parallel), spec.projector_path, str(PROBE_RULES)]
    return f"{machine_id()}:{hashlib.sha256(chr(10).join(parts).encode()).hexdigest()[:16]}"


def _store_path() -> Path:
    return settings.DATA_DIR / "runtime-probes.json"


@contextlib.contextmanager
def _store() -> dict:
    """The remembered results, locked against other processes while the block runs."""
    path = _store_path()
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            results = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            results = {}  # unreadable: probing again is only slower
        before = dict(results)
        yield results
        if results != before:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(results, indent=1))
            temporary.replace(path)


_cache: dict[tuple[Path, str], ProbeResult] = {}  # (file, key): a test may move the file
_probing = threading.Lock()


def _attempt(spec: LoadSpec, config: RuntimeConfig) -> Attempt:
    request = {
        "spec": asdict(spec),
        "config": config.as_dict(),
        "prompt_tokens": PROMPT_TOKENS,
        "decode_tokens": DECODE_TOKENS,
    }
    timeout = 60 + os.stat(spec.path).st_size / (50 * 1024 * 1024)  # loading a large file takes a while
    try:
        done = subprocess.run(
            [sys.executable, "-m", RUNNER_MODULE, "probe"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **supervisor.env},
        )
    except subprocess.TimeoutExpired:
        return Attempt(label=config.label, ok=False, outcome=f"no answer within {timeout:.0f} s")
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or [""])[-1][:200]
        how = exit_description(done.returncode)
        return Attempt(label=config.label, ok=False, outcome=f"{how}: {last_line}" if last_line else how)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    outcome = f"prompt {measured['prompt_tok_s']:.0f} tok/s, decode {measured['decode_tok_s']:.0f} tok/s"
    if "batched_tok_s" in measured:
        outcome += f", {spec.parallel} at once {measured['batched_tok_s']:.0f} tok/s"
    return Attempt(
        label=config.label,
        ok=True,
        outcome=outcome,
        decode_tok_s=measured["decode_tok_s"],
        prompt_tok_s=measured["prompt_tok_s"],
        batched_tok_s=measured.get("batched_tok_s"),
    )


def best_of(survivors: list[Attempt]) -> Attempt:
    """The survivor that is never far behind: for each speed timed (prompt, one reply, every
    slot at once) its share of the best survivor's, and the highest of the lowest shares wins;
    on a tie, the earlier (the candidates come fastest first)."""
    best = [max(speeds) for speeds in zip(*(a.speeds() for a in survivors), strict=True)]

    def worst_share(attempt: Attempt) -> float:
        return min((speed / top if top else 1.0) for speed, top in zip(attempt.speeds(), best, strict=True))

    return max(survivors, key=worst_share)  # max keeps the first of equals


def _may_beat(config: RuntimeConfig, survivors: list[RuntimeConfig]) -> bool:
    """Whether ``config`` could be faster than every configuration that survived so far.
    Once one evaluates real batches, only the other layout of the weights (repacked or not,
    with the same offload) can; fewer threads, a smaller micro-batch or no offload only give
    something up."""
    return all(
        config.use_extra_bufts != other.use_extra_bufts
        and config.n_gpu_layers == other.n_gpu_layers
        and config.n_threads is None
        and config.n_ubatch > 1
        for other in survivors
        if other.n_ubatch > 1
    )


def probe_run(spec: LoadSpec) -> ProbeResult:
    """Try the configurations worth having, fastest first, skipping those that can only be
    slower than one that survived (``_may_beat``); of the survivors, ``best_of`` wins."""
    attempts: list[tuple[RuntimeConfig, Attempt]] = []
    for config in config_candidates(spec):
        if not _may_beat(config, [tried for tried, attempt in attempts if attempt.ok]):
            continue
        attempt = _attempt(spec, config)
        attempts.append((config, attempt))
        logger.info("Probe of %s with %s: %s", spec.slug, attempt.label, attempt.outcome)
    survivors = [attempt for _, attempt in attempts if attempt.ok]
    if not survivors:
        raise ProbeFailed(
            "It crashed the model runtime in every configuration tried: "
            + "; ".join(f"{a.label}: {a.outcome}" for _, a in attempts)
        )
    chosen = best_of(survivors)
    failed = [f"{a.label} failed ({a.outcome})" for _, a in attempts if not a.ok]
    beaten = [f"{a.label} is slower ({a.outcome})" for a in survivors if a is not chosen]
    works = f"{chosen.label} works ({chosen.outcome})"
    reason = "; ".join([*failed, *beaten, works]) + "."
    repacked_crashed = any(config == DEFAULT_CONFIG and not attempt.ok for config, attempt in attempts)
    if repacked_crashed and cpu_widest_unit(cpu_features()) == "AMX":
        reason += " " + AMX_BUILD_HINT
    return ProbeResult(
        key=probe_key(spec),
        slug=spec.slug,
        config=next(config for config, attempt in attempts if attempt is chosen),
        reason=reason,
        attempts=[attempt for _, attempt in attempts],
        probed_at=time.time(),
    )


def config_for(spec: LoadSpec) -> ProbeResult:
    """The configuration to load ``spec`` with on this machine, probing it the first time."""
    key = probe_key(spec)
    cached = (_store_path(), key)
    if cached in _cache:
        return _cache[cached]
    with _probing:
        if cached in _cache:
            return _cache[cached]
        with _store() as stored:
            if key in stored:
                _cache[cached] = ProbeResult.from_dict(stored[key])
                return _cache[cached]
        result = probe_run(spec)  # seconds; not holding the file lock meanwhile
        with _store() as stored:
            stored[key] = result.as_dict()
        _cache[cached] = result
        return result


def forget(spec: LoadSpec) -> None:
    """Probe ``spec`` again on its next use (its configuration crashed after all)."""
    with contextlib.suppress(FileNotFoundError):
        key = probe_key(spec)
        _cache.pop((_store_path(), key), None)
        with _store() as stored:
            stored.pop(key, None)


def results_here() -> list[ProbeResult]:
    """This machine's remembered choices, newest first, for the hub and the heartbeat."""
    here = f"{machine_id()}:"
    with _store() as stored:
        results = [ProbeResult.from_dict(data) for key, data in stored.items() if key.startswith(here)]
    return sorted(results, key=lambda r: r.probed_at, reverse=True)

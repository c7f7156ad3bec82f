"""What this machine offers local models: memory, CPU threads, GPU offload, disk."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from django.conf import settings

from . import probe
from .runner_protocol import KV_CACHE_SHARE_OF_F16

MIB = 1024 * 1024
# llama.cpp's compute buffers and the runtime around the weights and the KV cache.
_OVERHEAD_BYTES = 128 * MIB
_BUDGET_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Machine:
    ram_total: int
    ram_available: int
    cpu_threads: int
    gpu_offload: bool
    memory_budget: int
    cpu_features: list[str] = field(default_factory=list)  # AVX2, AVX-512, AMX…, as advertised
    llama_cpp_version: str = ""
    # What the probe chose for each model used here: slug, configuration and why.
    runtime_choices: list[dict] = field(default_factory=list)

    @property
    def cpu_widest_unit(self) -> str:
        return probe.cpu_widest_unit(self.cpu_features)

    def as_dict(self) -> dict:
        return asdict(self)


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


def _cgroup_limit() -> int | None:
    """A container's memory limit (cgroup v2), when it is lower than the machine's."""
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


@cache  # read per request otherwise (every reply's limits); it does not change while we run
def ram_total() -> int:
    total = _meminfo().get("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def gpu_offload_supported() -> bool:
    """Whether llama.cpp was built with a GPU backend (CUDA, Metal, Vulkan…)."""
    return probe.build_info().gpu_offload


def memory_budget() -> int:
    """Bytes a worker may fill with loaded models."""
    configured = settings.LOCAL_MODEL_MEMORY_MB
    return configured * MIB if configured else int(ram_total() * _BUDGET_SHARE)


def machine_facts() -> Machine:
    info = _meminfo()
    total = ram_total()
    return Machine(
        ram_total=total,
        ram_available=min(info.get("MemAvailable", total), total),
        cpu_threads=len(os.sched_getaffinity(0)),
        gpu_offload=gpu_offload_supported(),
        memory_budget=memory_budget(),
        cpu_features=probe.cpu_features(),
        llama_cpp_version=probe.build_info().llama_cpp_version,
        runtime_choices=[
            {"slug": r.slug, "label": r.label, "reason": r.reason, "attempts": len(r.attempts)}
            for r in probe.results_here()
        ],
    )


def memory_needed(*, size_bytes: int, kv_bytes_per_token: int, n_ctx: int) -> int:
    """An estimate of the memory a model takes once loaded: its weights, its KV cache
    for ``n_ctx`` tokens (``kv_bytes_per_token`` counts keys and values in f16, as the model's
    file describes them; the runner keeps keys in 8 bits), and llama.cpp's working buffers."""
    kv_bytes = round(kv_bytes_per_token * KV_CACHE_SHARE_OF_F16 * n_ctx)
    return size_bytes + kv_bytes + _OVERHEAD_BYTES


def disk_free(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free

"""``localai doctor``: what this machine offers llama.cpp, and a probe of the bundled model."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from models_hub import probe
from models_hub.bundled import BUNDLED_CONTEXT, BUNDLED_NAME, BUNDLED_SLUG, bundled_model_path
from models_hub.runner_protocol import LoadSpec


class Command(BaseCommand):
    help = "Print the CPU features, the llama.cpp build and GPU offload, then probe the bundled model."

    def handle(self, *args, **options) -> None:
        flags = set(probe.cpu_features())
        self.stdout.write("CPU features (as the CPU advertises them):")
        for name, needed in probe.FEATURE_FLAGS.items():
            present = [flag for flag in needed if flag in flags]
            self.stdout.write(f"  {name:<13} {'yes (' + ', '.join(present) + ')' if present else 'no'}")
        info = probe.build_info()
        self.stdout.write(f"llama.cpp: llama-cpp-python {info.llama_cpp_version} ({probe.llama_build_id()})")
        self.stdout.write(f"  built with: {info.system_info}")
        self.stdout.write(f"GPU offload: {'yes' if info.gpu_offload else 'no (built for CPU)'}")

        # Straight from the packaged file: the doctor needs no database.
        spec = LoadSpec(
            slug=BUNDLED_SLUG,
            path=str(bundled_model_path()),
            n_ctx=min(BUNDLED_CONTEXT, settings.LLAMA_CONTEXT),
            n_threads=settings.LLAMA_THREADS,
            n_gpu_layers=settings.LLAMA_GPU_LAYERS,
            chat_template="",
            memory_bytes=0,
        )
        threads, layers = spec.n_threads, spec.n_gpu_layers
        self.stdout.write(f"Probing {BUNDLED_NAME} ({threads} threads, {layers} GPU layers)…")
        probe.forget(spec)
        try:
            result = probe.config_for(spec)
        except probe.ProbeFailed as exc:
            self.stdout.write(self.style.ERROR(f"  {exc}"))
            raise SystemExit(1) from exc
        for attempt in result.attempts:
            mark = self.style.SUCCESS("works") if attempt.ok else self.style.ERROR("failed")
            self.stdout.write(f"  {attempt.label}: {mark}, {attempt.outcome}")
        self.stdout.write(f"Chosen: {result.label}. {result.reason}")

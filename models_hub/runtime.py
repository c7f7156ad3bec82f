"""Local models as the rest of the app uses them: write a reply, count tokens, say what is loaded.

The models themselves live in the model runner, a child process of this one
(``models_hub.runner``, started and watched by ``models_hub.supervisor``); the llama.cpp
options each gets on this machine come from a probe (``models_hub.probe``). What is decided
here: how a LocalModel's settings become a load spec, and what a runner crash means for the
model: a model that takes its runner down ``UNHEALTHY_AFTER`` times in a row is switched off
with the reason, until an admin checks it again from the hub.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator

from django.conf import settings

from localai_site.core.refusals import Refusal

from . import probe
from .machine import memory_budget, memory_needed
from .models import LocalModel, ModelAction
from .runner_protocol import (
    ERROR_CONTEXT,
    ERROR_MEMORY,
    GenerateRequest,
    Limits,
    LoadSpec,
    TokenizeRequest,
)
from .supervisor import RunnerCrashed, RunnerError, supervisor

logger = logging.getLogger(__name__)

UNHEALTHY_AFTER = 3
# The process was killed from outside (the OOM killer, an operator): not the model's fault,
# and not a reason to doubt the configuration the probe chose.
_KILLED_FROM_OUTSIDE = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT}

# Set whenever the loaded models change: the worker's heartbeat reports at once.
state_changed = supervisor.state_changed


class LocalModelError(Refusal):
    """A local reply that cannot be written, with the reason for the person."""

    def __init__(self, message: str) -> None:
        super().__init__("local_model", message)


def replies_at_once(*, sees_images: bool, chosen: int | None = None) -> int:
    """The slots a model is loaded with: the hub's choice for it (``chosen``), else
    LOCAL_PARALLEL_REPLIES; a vision model's handler writes one reply at a time."""
    return 1 if sees_images else chosen or settings.LOCAL_PARALLEL_REPLIES


def load_spec_for(model: LocalModel) -> LoadSpec:
    """How ``model`` is loaded: its own settings, else the instance's (LLAMA_*, LOCAL_*)."""
    n_ctx = model.n_ctx or min(model.context_length, settings.LLAMA_CONTEXT)
    # Each slot holds a whole window of KV cache.
    parallel = replies_at_once(sees_images=model.sees_images, chosen=model.parallel_replies)
    return LoadSpec(
        slug=model.slug,
        path=model.file_path,
        n_ctx=n_ctx,
        n_threads=model.n_threads or settings.LLAMA_THREADS,
        n_gpu_layers=settings.LLAMA_GPU_LAYERS if model.n_gpu_layers is None else model.n_gpu_layers,
        chat_template=model.chat_template_override,
        projector_path=model.projector_path,
        parallel=parallel,
        # ``size_bytes`` counts the projector too: it is loaded beside the model.
        memory_bytes=memory_needed(
            size_bytes=model.size_bytes, kv_bytes_per_token=model.kv_bytes_per_token, n_ctx=n_ctx * parallel
        ),
    )


def _limits() -> Limits:
    return Limits(memory_budget=memory_budget(), idle_unload_s=settings.LOCAL_MODEL_IDLE_UNLOAD_S)


def _check_healthy(model: LocalModel) -> None:
    if model.unhealthy_reason:
        raise LocalModelError(
            f"{model.name} is switched off on this instance: {model.unhealthy_reason} "
            "An admin can check it again on the Models page."
        )


def _configured(model: LocalModel) -> tuple[LoadSpec, probe.ProbeResult]:
    _check_healthy(model)
    spec = load_spec_for(model)
    try:
        return spec, probe.config_for(spec)
    except probe.ProbeFailed as exc:
        model_unhealthy_mark(model=model, reason=str(exc))
        raise LocalModelError(f"{model.name} cannot run on this machine. {exc}") from exc


def _translated(exc: RunnerError) -> LocalModelError:
    if exc.kind == ERROR_MEMORY:
        return LocalModelError(str(exc))
    if exc.kind == ERROR_CONTEXT:
        return LocalModelError(f"The conversation does not fit the model's context ({exc}).")
    logger.error("The model runner failed a request: %s", exc)
    return LocalModelError("The model failed while writing this reply.")


def _crashed(model: LocalModel, spec: LoadSpec, exc: RunnerCrashed) -> LocalModelError:
    if exc.returncode is None or -exc.returncode not in _KILLED_FROM_OUTSIDE:
        probe.forget(spec)  # the chosen configuration crashed after all: probe it again
    unhealthy = model_crash_record(model=model, how=exc.how)
    message = (
        f"The local model runtime stopped unexpectedly ({exc.how}) while writing this reply. "
        "What it wrote so far is kept."
    )
    if unhealthy:
        return LocalModelError(f"{message} {model.name} is now switched off: {model.unhealthy_reason}")
    return LocalModelError(f"{message} Send your message again to retry.")


def reply_stream(
    *,
    model: LocalModel,
    messages: list[dict],
    max_tokens: int,
    temperature: float,
    seed: int | None,
    cancelled: Callable[[], bool],
    top_p: float | None = None,
    stop: tuple[str, ...] = (),
    prompt_cache_key: str = "",
) -> Iterator[str | tuple[int, int, int]]:
    """The reply's pieces of text, then (prompt tokens, completion tokens, prompt tokens found
    in the cache). ``prompt_cache_key`` names the conversation: the runner keeps its prompt
    for the next turn (see ``models_hub.runner``)."""
    spec, chosen = _configured(model)
    request = GenerateRequest(
        spec=spec,
        config=chosen.config,
        limits=_limits(),
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        top_p=top_p,
        stop=stop,
        prompt_cache_key=prompt_cache_key,
    )
    try:
        yield from supervisor.generate(request, cancelled)
    except RunnerError as exc:
        raise _translated(exc) from exc
    except RunnerCrashed as exc:
        raise _crashed(model, spec, exc) from exc
    if model.runtime_crashes:
        model_crash_clear(model=model)


def token_counts(*, model: LocalModel, texts: list[str]) -> list[int]:
    """How many tokens each text takes, counted with the model's own tokenizer."""
    spec, chosen = _configured(model)
    request = TokenizeRequest(spec=spec, config=chosen.config, limits=_limits(), texts=texts)
    try:
        return supervisor.call("tokenize", request)
    except RunnerError as exc:
        raise _translated(exc) from exc
    except RunnerCrashed as exc:
        raise _crashed(model, spec, exc) from exc


def prompt_caches_forget_here(cache_keys: list[str]) -> None:
    """Drop what this process's runner keeps of these conversations."""
    supervisor.forget(cache_keys)


def loaded_summary() -> list[dict]:
    """What this process's runner holds, for the worker's heartbeat and the hub page."""
    runner = supervisor.current()
    return list(runner.summary) if runner is not None else []


# --- Health ---------------------------------------------------------------------------


def model_crash_record(*, model: LocalModel, how: str) -> bool:
    """Count a runner crash against ``model``; answers whether it is now switched off."""
    model.runtime_crashes += 1
    model.last_crash = how
    fields = ["runtime_crashes", "last_crash"]
    if model.runtime_crashes >= UNHEALTHY_AFTER:
        model.unhealthy_reason = (
            f"it stopped the local model runtime {model.runtime_crashes} times in a row (last: {how})."
        )
        fields.append("unhealthy_reason")
    LocalModel.objects.filter(pk=model.pk).update(**{name: getattr(model, name) for name in fields})
    logger.error("%s crashed the model runner (%s), %s in a row", model.slug, how, model.runtime_crashes)
    return bool(model.unhealthy_reason)


def model_crash_clear(*, model: LocalModel) -> None:
    model.runtime_crashes = 0
    LocalModel.objects.filter(pk=model.pk).update(runtime_crashes=0)


def model_unhealthy_mark(*, model: LocalModel, reason: str) -> None:
    model.unhealthy_reason = reason[:1000]
    LocalModel.objects.filter(pk=model.pk).update(unhealthy_reason=model.unhealthy_reason)


def model_health_reset(*, model: LocalModel) -> LocalModel:
    """Let ``model`` run again, probed afresh on its next use."""
    model.action_check(ModelAction.HEALTH_RESET)
    probe.forget(load_spec_for(model))
    model.runtime_crashes, model.unhealthy_reason, model.last_crash = 0, "", ""
    LocalModel.objects.filter(pk=model.pk).update(runtime_crashes=0, unhealthy_reason="", last_crash="")
    return model

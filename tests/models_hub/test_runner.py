"""The model runner with the real llama.cpp: its model cache, its crashes, and the probe.

Requests go through the real supervisor to a real runner process, as a reply's do.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from models_hub import probe
from models_hub.bundled import bundled_model_path
from models_hub.runner_protocol import (
    ERROR_MEMORY,
    FAULT_ENV,
    KV_CACHE_SHARE_OF_F16,
    GenerateRequest,
    Limits,
    LoadSpec,
    RuntimeConfig,
    TokenizeRequest,
)
from models_hub.supervisor import RunnerCrashed, RunnerError, supervisor
from tests.waiting import wait_until

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def fresh_runner():
    """Each test starts with a runner that holds nothing, and leaves none behind."""
    supervisor.stop()
    yield
    supervisor.env.clear()
    supervisor.stop()


@pytest.fixture
def two_files(tmp_path):
    second = tmp_path / "second.gguf"
    shutil.copyfile(bundled_model_path(), second)
    return str(bundled_model_path()), str(second)


def spec(path: str, slug: str, memory_mb: int = 200, n_ctx: int = 512) -> LoadSpec:
    return LoadSpec(
        slug=slug,
        path=path,
        n_ctx=n_ctx,
        n_threads=1,
        n_gpu_layers=0,
        chat_template="",
        memory_bytes=memory_mb * MIB,
    )


@functools.cache
def config_here() -> RuntimeConfig:
    """The configuration the probe chose for the bundled model on this machine: the default
    (repacked weights) crashes on some (an AMX CPU, llama.cpp built by an unfixed GCC 12), and
    these tests are about the cache and crashes, not about that."""
    return probe.config_for(spec(str(bundled_model_path()), "probed")).config


def limits(budget_mb: int, idle_unload_s: int = 0) -> Limits:
    return Limits(memory_budget=budget_mb * MIB, idle_unload_s=idle_unload_s)


def count(load: LoadSpec, budget_mb: int, text: str = "hello", idle_unload_s: int = 0) -> int:
    request = TokenizeRequest(
        spec=load, config=config_here(), limits=limits(budget_mb, idle_unload_s), texts=[text]
    )
    return supervisor.call("tokenize", request)[0]


def loaded() -> list[dict]:
    return supervisor.call("summary")


def long_reply(load: LoadSpec, budget_mb: int = 500) -> GenerateRequest:
    return GenerateRequest(
        spec=load,
        config=config_here(),
        limits=limits(budget_mb),
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=600,
        temperature=0.0,
    )


def runner_pid() -> int:
    return supervisor.runner().pid


# --- The model cache --------------------------------------------------------------------


def test_two_models_stay_loaded_while_they_fit(two_files):
    first, second = two_files
    assert count(spec(first, "a"), 500) > 0
    assert count(spec(second, "b"), 500) > 0
    assert [m["slug"] for m in loaded()] == ["a", "b"]


def test_the_least_recently_used_model_makes_room(two_files):
    first, second = two_files
    count(spec(first, "a"), 300)
    count(spec(second, "b"), 300)
    assert [m["slug"] for m in loaded()] == ["b"]


def test_a_model_in_use_is_never_unloaded(two_files):
    first, second = two_files
    pieces = supervisor.generate(long_reply(spec(first, "a"), budget_mb=300), cancelled=lambda: False)
    next(pieces)  # "a" is writing
    with pytest.raises(RunnerError, match="in use") as refused:
        count(spec(second, "b"), 300)
    assert refused.value.kind == ERROR_MEMORY
    assert [(m["slug"], m["in_use"]) for m in loaded()] == [("a", True)]
    pieces.close()


def test_a_model_larger_than_the_budget_is_refused_with_the_numbers(two_files):
    with pytest.raises(RunnerError, match=r"needs about 200\.0\sMB.*may use 100\.0\sMB"):
        count(spec(two_files[0], "a"), 100)
    assert loaded() == []


def test_idle_models_and_deleted_files_are_unloaded(two_files, tmp_path):
    first, second = two_files
    count(spec(first, "a"), 500, idle_unload_s=0)
    count(spec(second, "b"), 500, idle_unload_s=0)
    (tmp_path / "second.gguf").unlink()
    wait_until(
        lambda: [m["slug"] for m in loaded()] == ["a"], timeout=15, what="the deleted file's model to go"
    )
    count(spec(first, "a"), 500, idle_unload_s=1)
    wait_until(lambda: loaded() == [], timeout=10, what="the idle model to be unloaded")


def test_new_settings_replace_the_loaded_copy(two_files):
    count(spec(two_files[0], "a", n_ctx=512), 1000)
    count(spec(two_files[0], "a", n_ctx=1024), 1000)
    assert [m["n_ctx"] for m in loaded()] == [1024]


def test_stop_ends_the_generation_and_still_counts_the_tokens():
    pieces = supervisor.generate(long_reply(spec(str(bundled_model_path()), "a")), cancelled=lambda: True)
    received = list(pieces)
    texts = [p for p in received if isinstance(p, str)]
    prompt_tokens, completion_tokens, _ = received[-1]
    assert len(texts) <= 3 and prompt_tokens > 5 and 0 < completion_tokens <= 3


# --- The prompt cache -------------------------------------------------------------------


def opening(topic: str) -> list[dict]:
    return [{"role": "user", "content": f"Tell me about {topic}. " + f"I like {topic} a lot. " * 25}]


def turn(messages: list[dict], key: str, budget_mb: int = 500) -> tuple[str, int, int]:
    """One short greedy reply in the conversation ``key``: (text, prompt tokens, cached tokens)."""
    request = GenerateRequest(
        spec=spec(str(bundled_model_path()), "smol", n_ctx=1024),
        config=config_here(),
        limits=limits(budget_mb),
        messages=messages,
        max_tokens=8,
        temperature=0.0,
        prompt_cache_key=key,
    )
    *texts, (prompt_tokens, _, cached_tokens) = supervisor.generate(request, cancelled=lambda: False)
    return "".join(texts), prompt_tokens, cached_tokens


def prompts_held() -> int:
    return sum(model["prompts_held"] for model in loaded())


def follow_up(messages: list[dict], reply: str) -> list[dict]:
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": "Say more."}]


def test_a_conversations_next_turn_reuses_its_prompt_after_another_conversation_used_the_model():
    first = opening("apples")
    reply, first_prompt, cached = turn(first, "a")
    assert cached == 0
    assert turn(opening("boats"), "b")[2] == 0, "nothing of someone else's found, not even the template"
    # "b" took the model: "a"'s prompt is kept aside
    second = follow_up(first, reply)
    text, prompt_tokens, cached = turn(second, "a")
    assert first_prompt <= cached < prompt_tokens

    supervisor.stop()  # a runner that never saw this conversation
    fresh_text, fresh_prompt_tokens, fresh_cached = turn(second, "a")
    assert (fresh_prompt_tokens, fresh_cached) == (prompt_tokens, 0)
    assert starts_alike(text, fresh_text), "greedy text as without the cache"


def starts_alike(a: str, b: str, words: int = 8) -> bool:
    """Whether two greedy replies to one prompt begin with the same words. A prompt read in
    one batch and the same tokens decoded one at a time differ in their last bits (llama.cpp
    does not promise them equal), and keys cached in 8 bits can let that show late in a reply;
    a cache that held the wrong tokens shows from the first words."""
    return bool(a.split()) and a.split()[:words] == b.split()[:words]


def test_a_new_conversation_may_start_from_the_same_persons_prompt_only():
    first = opening("apples")
    reply, first_prompt, _ = turn(first, "ann.1")
    # An API client sends the whole history again, as a new conversation.
    assert turn(follow_up(first, reply), "ann.2")[2] >= first_prompt
    assert turn(first, "bob.3")[2] == 0


def test_a_forgotten_conversation_leaves_nothing_kept_nor_in_the_context():
    first = opening("apples")
    turn(first, "a")
    turn(opening("boats"), "b")
    assert prompts_held() == 2  # "a" kept aside, "b" in the context
    supervisor.forget(["a", "b"])
    assert prompts_held() == 0
    assert turn(first, "a")[2] == 0


def test_kept_prompts_beyond_the_memory_budget_go_least_recently_used_first():
    # Each opening is about 170 tokens: 3 MB of KV cache kept aside.
    budget_mb = 200 + 4  # the model, and room for one conversation's prompt
    apples, boats = opening("apples"), opening("boats")
    apples_reply, _, _ = turn(apples, "a", budget_mb)
    boats_reply, boats_prompt, _ = turn(boats, "b", budget_mb)  # keeps "a"
    turn(opening("clouds"), "c", budget_mb)  # keeps "b", drops "a"
    assert prompts_held() == 2
    assert turn(follow_up(boats, boats_reply), "b", budget_mb)[2] >= boats_prompt
    assert turn(follow_up(apples, apples_reply), "a", budget_mb)[2] == 0


def test_the_memory_estimate_counts_the_kv_cache_llama_cpp_keeps():
    """What the budget counts per token of context is what a loaded model holds per token."""
    import llama_cpp

    from models_hub.gguf import gguf_read
    from models_hub.runner import load

    path = str(bundled_model_path())
    llama = load(spec(path, "direct"), RuntimeConfig(use_extra_bufts=False))  # safe on any CPU
    tokens = llama.tokenize(b" The quick brown fox jumps over the lazy dog." * 20)[:200]
    llama.eval(tokens)
    held_per_token = llama_cpp.llama_state_seq_get_size(llama._ctx.ctx, 0) / len(tokens)
    llama.close()
    estimated = gguf_read(path).kv_bytes_per_token * KV_CACHE_SHARE_OF_F16
    assert held_per_token == pytest.approx(estimated, rel=0.01)


# --- Crashes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "how"), [(signal.SIGSEGV, "signal 11 (SIGSEGV)"), (signal.SIGKILL, "signal 9 (SIGKILL)")]
)
def test_a_runner_that_dies_mid_reply_fails_it_at_once_and_the_next_one_starts(sig, how):
    load = spec(str(bundled_model_path()), "a")
    pid = runner_pid()
    pieces = supervisor.generate(long_reply(load), cancelled=lambda: False)
    assert isinstance(next(pieces), str)
    os.kill(pid, sig)
    killed_at = time.monotonic()
    with pytest.raises(RunnerCrashed) as crashed:
        for _ in pieces:
            pass
    assert crashed.value.how == how
    assert time.monotonic() - killed_at < 2
    assert count(load, 500) > 0  # a new runner answers
    assert runner_pid() != pid


def test_requests_in_flight_all_hear_of_the_crash(two_files):
    load = spec(two_files[0], "a")
    pieces = supervisor.generate(long_reply(load), cancelled=lambda: False)
    next(pieces)
    outcome: dict[str, BaseException] = {}

    def count_meanwhile() -> None:
        try:
            while True:
                count(load, 500)
        except RunnerCrashed as exc:
            outcome["count"] = exc

    counting = threading.Thread(target=count_meanwhile)
    counting.start()
    os.kill(runner_pid(), signal.SIGSEGV)
    with pytest.raises(RunnerCrashed):
        list(pieces)
    counting.join(timeout=5)
    assert "SIGSEGV" in outcome["count"].how


def test_a_runner_that_keeps_crashing_is_restarted_with_growing_pauses():
    load = spec(str(bundled_model_path()), "a")
    supervisor.env[FAULT_ENV] = "load"
    pauses = []
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(RunnerCrashed, match="SIGSEGV"):
            count(load, 500)
        pauses.append(time.monotonic() - started)
    # Each try pays the runner's start-up; from the second on also a back-off, doubling.
    assert pauses[2] > pauses[1] + 0.3 and pauses[1] > pauses[0] + 0.3
    supervisor.env.clear()
    assert count(load, 500) > 0  # the pause after three crashes, then a healthy runner


# --- The probe --------------------------------------------------------------------------


def test_the_probe_times_repacked_weights_against_plain_ones_and_keeps_the_one_never_far_behind(
    settings, tmp_path
):
    settings.DATA_DIR = tmp_path
    result = probe.config_for(spec(str(bundled_model_path()), "a"))
    # On a CPU with AMX, a llama.cpp that GCC 12 compiled without scripts/gcc_amx_tile_fix.h
    # crashes here (`make llama-rebuild` compiles it again, past pip's cached wheel).
    assert result.attempts[0].label == "repacked weights"
    assert result.attempts[0].ok, result.attempts[0].outcome
    assert [(a.label, a.ok) for a in result.attempts] == [("repacked weights", True), ("no repacking", True)]
    chosen = probe.best_of(result.attempts)
    assert result.label == chosen.label
    other = next(a for a in result.attempts if a is not chosen)
    slower = f"{other.label} is slower ({other.outcome})"
    assert result.reason == f"{slower}; {chosen.label} works ({chosen.outcome})."


def test_the_probe_leaves_out_what_can_only_be_slower_than_a_survivor(monkeypatch):
    tried = []

    def attempt(load, config):
        tried.append(config.label)
        return probe.Attempt(
            config.label, True, "timed", decode_tok_s=90, prompt_tok_s=250, batched_tok_s=120
        )

    monkeypatch.setattr(probe, "_attempt", attempt)
    probe.probe_run(replace(spec(str(bundled_model_path()), "a"), n_gpu_layers=-1))
    # Not a micro-batch of one, one thread, nor the same without the GPU.
    assert tried == ["repacked weights", "no repacking"]


def test_the_choice_among_survivors_is_the_one_never_far_behind():
    def attempt(label, prompt, decode, batched=None):
        return probe.Attempt(label, True, "", decode_tok_s=decode, prompt_tok_s=prompt, batched_tok_s=batched)

    repacked = attempt("repacked, one at a time", prompt=300, decode=170, batched=130)
    plain = attempt("plain", prompt=300, decode=80, batched=125)
    assert probe.best_of([repacked, plain]) is repacked  # plain writes one reply at half the speed
    # A larger model gains much more from writing its replies together.
    plain_big = attempt("plain", prompt=300, decode=80, batched=400)
    assert probe.best_of([repacked, plain_big]) is plain_big
    # Equal: the earlier candidate, which is the faster one alone.
    assert probe.best_of([repacked, attempt("same", 300, 170, 130)]) is repacked
    assert probe.best_of([attempt("one slot", 300, 170), attempt("other", 250, 90)]).label == "one slot"


def test_the_probe_survives_a_configuration_that_crashes_and_keeps_the_fastest_that_works(
    settings, tmp_path, monkeypatch
):
    # What an AMX CPU does with a llama.cpp whose AMX kernels GCC 12 miscompiled: repacked
    # weights fault on any batch of more than one token.
    settings.DATA_DIR = tmp_path
    supervisor.env[FAULT_ENV] = "repacked-batch"
    monkeypatch.setattr(probe, "cpu_features", lambda: ["avx2", "avx512f", "amx_int8", "amx_tile"])
    load = spec(str(bundled_model_path()), "a")
    result = probe.config_for(load)
    assert [(a.label, a.ok) for a in result.attempts] == [
        ("repacked weights", False),
        ("repacked weights, micro-batch of one", True),
        ("no repacking", True),
    ]
    assert result.label == probe.best_of(result.attempts[1:]).label
    assert "repacked weights failed (signal 11 (SIGSEGV))" in result.reason
    assert result.reason.endswith('"make llama-rebuild" compiles it again with the fix.')
    # The runner writes a reply with that choice, under the same fault.
    request = GenerateRequest(
        spec=load,
        config=result.config,
        limits=limits(500),
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0.0,
    )
    assert any(
        isinstance(p, str) and p.strip() for p in supervisor.generate(request, cancelled=lambda: False)
    )
    assert loaded()[0]["config"] == result.label


def test_the_choice_is_remembered_for_this_machine_and_forgotten_on_request(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    load = spec(str(bundled_model_path()), "a")
    first = probe.config_for(load)
    assert probe.results_here() == [first]  # read back from the file other processes read
    supervisor.env[FAULT_ENV] = "load"  # a new probe would fail: none happens
    assert probe.config_for(load) == first
    probe.forget(load)
    with pytest.raises(probe.ProbeFailed, match="every configuration tried"):
        probe.config_for(load)


def test_the_web_process_never_loads_llama_cpp(tmp_path):
    """A reply in embedded mode, in a fresh interpreter: llama.cpp stays in the runner."""
    script = (
        "import django, os, sys\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'localai_site.settings'\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from accounts.models import User\n"
        "from chat import services\n"
        "from chat.models import Conversation, Message\n"
        "from models_hub.services import bundled_model_register\n"
        "model = bundled_model_register()\n"
        "user = User.objects.create_user('a@example.com', 'a long enough passphrase')\n"
        "conversation = Conversation.objects.create(owner=user, model=model.model_id)\n"
        "_, reply = services.message_send(conversation=conversation, content='Hi')\n"
        "services.reply_generate(message_id=reply.pk)\n"
        "reply.refresh_from_db()\n"
        "print(reply.status, bool(reply.content), 'llama_cpp' in sys.modules)\n"
    )
    env = {**os.environ, "LOCALAI_DATA_DIR": str(tmp_path), "CHAT_MAX_TOKENS": "8"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split()[-3:] == ["done", "True", "False"], done.stderr[-2000:]

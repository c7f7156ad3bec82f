"""Several people writing to the bundled model at once: does the app keep up with llama.cpp's
own server on the same machine?

(a) llama-server, built from the llama.cpp source that the installed llama-cpp-python
    vendors, the way llama-cpp-python builds it (Release, CMAKE_ARGS as the Makefile sets
    them, no curl; linked statically so one file is cached), under
    ~/.cache/localai-bench/llama-server-<version>/ (built on first use, several minutes).
    At each load it runs every configuration worth trying: one slot (``-np 1``, replies one
    after another) and, for several chats, ``-np N --cont-batching`` (decoded together), each
    with repacked weights and with ``--no-repack``. Same thread count as the app's model
    (LLAMA_THREADS), ``-c`` = slots x the app's context per conversation, streaming
    /v1/chat/completions with prompt caching off (each app chat is a new conversation);
    Also ``-ub 1`` with repacked weights, which is what survives where batches fault; a
    configuration that crashes on this machine is reported under ``llama_server_crashed``
    and not started again;
(b) the app, scaled: `localai serve` (daphne), Redis and one `localai worker --queues local`,
    with LOCAL_PARALLEL_REPLIES = the largest load (a slot per chat, as -np gives
    llama-server), each chat a different person's new conversation over its own websocket,
    as the page sends it.

Each chat has its own prompt, asking for a long story (the same prompts on both sides, greedy,
--max-tokens per reply; the completion tokens actually written are reported). A round sends
1, 4 or 8 chats at once (--loads); per load the llama-server configurations run, then the app,
and the whole sequence repeats --pairs times (A B A B); figures are medians over the pairs.

Per round: ``total_tok_s`` = all completion tokens / time from the first send to the last
token; ``per_chat_tok_s`` = the median chat's decode rate, (tokens - 1) / (last token - first
token); ``ttft_max_ms`` and ``ttft_p50_ms``: from sending to a chat's first token. Ratios, per
pair against the best llama-server configuration of that pair for the metric, then the median:
``ratio_tok_s`` = app total tok/s / best total tok/s (goal >= 1 at 4 and 8 chats),
``ratio_decode_tok_s`` = app per-chat decode rate / the best (goal >= 0.95 at one chat, where
the first token's wait is left to the next ratio), ``ratio_ttft_max`` = app slowest first token
/ the lowest one (goal <= 1 at 4 and 8 chats).
``app_runtime`` is what the worker announces for the loaded model (its configuration and
slots) and the worker settings found.

    .venv/bin/python bench/local_concurrency.py [--loads 1,4,8] [--pairs 2] [--max-tokens 128]
        [--database-url postgres://…]

SQLite in a temporary data folder by default; --database-url puts the data in a fresh
database on that PostgreSQL server (dropped at the end). Redis: BENCH_REDIS_URL, by default
redis://127.0.0.1:6379/11, flushed at the start and the end. One JSON line goes to stdout,
progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    ROOT,
    VENV_BIN,
    bench_environment,
    free_port,
    log,
    median,
    processes,
    report,
    session_cookie,
    wait_for_http,
    wait_for_workers,
    worker_heartbeats,
)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
CACHE = Path.home() / ".cache" / "localai-bench"
# What the Makefile forces into llama-cpp-python's C++ build: llama-server gets the same.
GCC_AMX_FIX = ROOT / "scripts" / "gcc_amx_tile_fix.h"
# One subject per chat: each asks for more than 128 tokens of the bundled model.
SUBJECTS = (
    "a lighthouse keeper and a storm",
    "a baker who opens a shop in a small mountain village",
    "a girl who finds a map in her grandfather's attic",
    "a robot learning to paint",
    "two friends sailing around the world",
    "a detective solving a mystery on a train",
    "a gardener whose plants start to talk",
    "a young astronaut on her first trip to the moon",
)
PROMPTS = tuple(f"Tell me a long story about {subject}." for subject in SUBJECTS)
FINAL_STATUSES = {"done", "stopped", "failed"}
REPLY_TIMEOUT_S = 600


# --- llama-server, built once ----------------------------------------------------------------
def llama_server_binary() -> Path:
    """llama-server from the llama.cpp that the installed llama-cpp-python vendors."""
    version = metadata.version("llama_cpp_python")
    fix = hashlib.sha256(GCC_AMX_FIX.read_bytes()).hexdigest()[:8]
    binary = CACHE / f"llama-server-{version}-{fix}" / "llama-server"
    if binary.exists():
        return binary
    log(f"building llama-server from llama-cpp-python {version}'s llama.cpp (several minutes)")
    with tempfile.TemporaryDirectory(prefix="llama-server-build-") as tmp:
        folder = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}",
             "--no-binary", ":all:", "--no-deps", "-d", tmp],
            check=True, stdout=sys.stderr,
        )  # fmt: skip
        sdist = next(folder.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            archive.extractall(folder, filter="data")
        source = folder / sdist.name.removesuffix(".tar.gz") / "vendor" / "llama.cpp"
        build = folder / "build"
        # As llama-cpp-python's CMakeLists sets llama.cpp up, plus the Makefile's CMAKE_ARGS.
        flags = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"]
        flags += ["-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
        flags += shlex.split(os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=ON"))
        flags += [f"-DCMAKE_CXX_FLAGS=-include {GCC_AMX_FIX}"]
        nice = ["nice", "-n", "10"]  # the build need not take the machine from anyone
        for step in (
            ["cmake", "-S", str(source), "-B", str(build), *flags],
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 1)],
        ):
            log(" ".join(step))
            subprocess.run([*nice, *step], check=True, stdout=sys.stderr)
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".part")
        shutil.copy2(build / "bin" / "llama-server", partial)
        partial.rename(binary)
    log(f"llama-server cached at {binary}")
    return binary


@dataclass(frozen=True)
class ServerConfig:
    slots: int
    repack: bool
    ubatch_one: bool = False  # -ub 1: what repacked weights need where batches fault

    @property
    def label(self) -> str:
        flags = f"-np {self.slots}" + (" --cont-batching" if self.slots > 1 else "")
        return flags + (" -ub 1" if self.ubatch_one else "") + ("" if self.repack else " --no-repack")

    def argv(self, binary: Path, model: Path, port: int, threads: int, n_ctx: int) -> list[str]:
        argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--no-webui"]
        argv += ["-t", str(threads), "-c", str(n_ctx * self.slots), "-np", str(self.slots)]
        argv += ["--cont-batching"] if self.slots > 1 else ["--no-cont-batching"]
        argv += ["-ub", "1"] if self.ubatch_one else []
        return argv + ([] if self.repack else ["--no-repack"])


def configs_for(load: int) -> list[ServerConfig]:
    """Repacked weights, repacked with a micro-batch of one, plain weights: with one slot and,
    for several chats, with a slot each."""
    slots = [1] if load == 1 else [1, load]
    variants = [(True, False), (True, True), (False, False)]
    return [ServerConfig(n, repack, one) for n in slots for repack, one in variants]


class ServerCrashed(Exception):
    """The configuration faults on this machine (say, AMX kernels a compiler got wrong)."""


def wait_for_server(proc: subprocess.Popen, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            wait_for_http(url, timeout=1)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
    raise ServerCrashed(f"exited with {proc.returncode} before answering")


# --- one round: every chat sent at once --------------------------------------------------------
@dataclass
class Chat:
    """One chat's times, in seconds from the round's start (all sends go out then)."""

    first: float | None = None
    last: float | None = None
    tokens: int = 0
    prompt_tokens: int | None = None
    message_id: int | None = None  # the app's reply


def summary(chats: list[Chat]) -> dict:
    times = [(chat.first, chat.last) for chat in chats]
    if any(first is None or last is None for first, last in times):
        raise RuntimeError("a chat got no token")
    firsts, lasts = [first or 0.0 for first, _ in times], [last or 0.0 for _, last in times]
    rates = [
        (chat.tokens - 1) / (last - first)
        for chat, first, last in zip(chats, firsts, lasts, strict=True)
        if last > first
    ]
    return {
        "total_tok_s": round(sum(chat.tokens for chat in chats) / max(lasts), 1),
        "per_chat_tok_s": median(rates) if rates else None,
        "ttft_max_ms": round(max(firsts) * 1000, 1),
        "ttft_p50_ms": median([first * 1000 for first in firsts]),
        "tokens": [chat.tokens for chat in chats],
        "prompt_tokens": [chat.prompt_tokens for chat in chats],
    }


async def server_round(port: int, prompts: Sequence[str], max_tokens: int) -> list[Chat]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench", max_retries=0)
    started = time.perf_counter()

    async def one(prompt: str) -> Chat:
        chat = Chat()
        stream = await client.chat.completions.create(
            model="bundled", messages=[{"role": "user", "content": prompt}], stream=True,
            max_tokens=max_tokens, temperature=0, stream_options={"include_usage": True},
            extra_body={"cache_prompt": False},
        )  # fmt: skip
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chat.last = time.perf_counter() - started
                chat.first = chat.first or chat.last
            if chunk.usage:
                chat.tokens, chat.prompt_tokens = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
        return chat

    try:
        return await asyncio.gather(*(one(prompt) for prompt in prompts))
    finally:
        await client.close()


async def app_round(port: int, chats: list[tuple[str, str]], prompts: Sequence[str]) -> list[Chat]:
    """One socket per (session cookie, conversation id), each person's own; all send at once."""
    from websockets.asyncio.client import connect

    origin = f"http://127.0.0.1:{port}"
    sockets = await asyncio.gather(
        *(
            connect(
                f"ws://127.0.0.1:{port}/ws/chat/{cid}/",
                additional_headers={"Cookie": cookie, "Origin": origin},
            )
            for cookie, cid in chats
        )
    )
    await asyncio.sleep(0.5)  # as a page is open a moment before anyone types
    started = time.perf_counter()

    async def one(ws, prompt: str) -> Chat:
        chat = Chat()
        await ws.send(json.dumps({"type": "send", "content": prompt}))
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "delta":
                chat.last = time.perf_counter() - started
                chat.first = chat.first or chat.last
            elif frame["type"] == "error":
                raise RuntimeError(f"error frame: {frame}")
            elif frame["type"] == "message" and frame["message"]["role"] == "assistant":
                message = frame["message"]
                if message["status"] in FINAL_STATUSES:
                    if message["status"] != "done":
                        raise RuntimeError(f"reply ended {message['status']}: {message['error']}")
                    chat.tokens, chat.message_id = message["completion_tokens"], message["id"]
                    return chat
        raise RuntimeError("the socket closed before the reply ended")

    try:
        return await asyncio.wait_for(
            asyncio.gather(*(one(ws, prompt) for ws, prompt in zip(sockets, prompts, strict=True))),
            REPLY_TIMEOUT_S,
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# --- the run ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", default="1,4,8", help="chats at once, comma-separated (at most 8)")
    parser.add_argument("--pairs", type=int, default=2, help="llama-server/app rounds, alternating")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a fresh database is made there")
    args = parser.parse_args()
    loads = [int(load) for load in args.loads.split(",") if load.strip()]
    if not loads or max(loads) > len(PROMPTS) or min(loads) < 1:
        parser.error(f"--loads: between 1 and {len(PROMPTS)} chats")

    binary = llama_server_binary()
    load_before = os.getloadavg()
    env = {"REDIS_URL": REDIS_URL, "CHAT_MAX_TOKENS": str(args.max_tokens), "CHAT_TEMPERATURE": "0"}
    # As the admin of a team this size sets "Replies at once": a slot for every chat of the
    # largest load, as llama-server gets with -np.
    env["LOCAL_PARALLEL_REPLIES"] = str(max(loads))
    with bench_environment(args.database_url, **env) as (data_dir, child_env):
        result = run(args, loads, binary, child_env, data_dir)
    report({**result, "load_before": [round(load, 2) for load in load_before]})


def run(args, loads: list[int], binary: Path, env: dict[str, str], data_dir: Path) -> dict:
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from chat.models import Message
    from chat.services import conversation_create
    from models_hub import probe
    from models_hub.runtime import load_spec_for
    from models_hub.services import bundled_model_register

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(REDIS_URL).flushdb()
    bundled = bundled_model_register()
    spec = load_spec_for(bundled)  # the app's context per conversation and thread count
    # One person per chat: the app caps the replies one person has going at once.
    people = [
        User.objects.create_user(f"person{n}@example.com", None, default_model=bundled.model_id)
        for n in range(max(loads))
    ]
    cookies = [session_cookie(person) for person in people]

    def new_chats(count: int) -> list[tuple[str, str]]:
        """Each person's new conversation, so every round sends the very same prompts."""
        return [
            (cookie, str(conversation_create(owner=person, model_id=bundled.model_id).pk))
            for person, cookie in zip(people[:count], cookies[:count], strict=True)
        ]

    def prompt_tokens(chats: list[Chat]) -> None:
        replies = Message.objects.filter(pk__in=[chat.message_id for chat in chats])
        counts: dict[int | None, int | None] = dict(replies.values_list("pk", "prompt_tokens"))
        for chat in chats:
            chat.prompt_tokens = counts.get(chat.message_id)

    crashed: dict[str, str] = {}  # label: how; not started again in later pairs

    def server_run(config: ServerConfig, load: int) -> dict | None:
        if config.label in crashed:
            return None
        port = free_port()
        argv = config.argv(binary, Path(spec.path), port, spec.n_threads, spec.n_ctx)
        with processes((argv, env, data_dir / "llama-server.log")) as (server,):
            try:
                wait_for_server(server, f"http://127.0.0.1:{port}/health")
                asyncio.run(server_round(port, PROMPTS[:1], 8))  # warm-up
                chats = asyncio.run(server_round(port, PROMPTS[:load], args.max_tokens))
            except Exception as exc:  # noqa: BLE001 - a fault here is a finding, not an error
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=3)  # a fault mid-round: the stream broke as it died
                if server.poll() is None and not isinstance(exc, ServerCrashed):
                    raise
                crashed[config.label] = f"crashed ({server.poll()})"
                log(f"llama-server {config.label}: {crashed[config.label]}")
                return None
        return summary(chats)

    web_port = free_port()
    localai = str(VENV_BIN / "localai")
    with processes(
        ([localai, "serve", "--no-migrate", "--port", str(web_port)], env, data_dir / "web.log"),
        ([localai, "worker", "--queues", "local", "--loglevel", "warning"], env, data_dir / "worker.log"),
    ):
        wait_for_http(f"http://127.0.0.1:{web_port}/healthz")
        wait_for_workers(REDIS_URL, "local")
        # Warm-up: the runner starts, probes and loads the model, then a full round.
        for load in (1, max(loads)):
            asyncio.run(app_round(web_port, new_chats(load), PROMPTS[:load]))
        time.sleep(1)  # the worker announces what it holds at once; let it land
        app_runtime = {
            "loaded": [
                {key: model.get(key) for key in ("slug", "config", "n_ctx", "parallel")}
                for beat in worker_heartbeats(REDIS_URL, "local")
                for model in beat.get("loaded", [])
            ],
            "settings": {
                name: getattr(settings, name)
                for name in ("LOCAL_PARALLEL_REPLIES", "LOCAL_CONCURRENCY", "LLAMA_THREADS", "LLAMA_CONTEXT")
                if hasattr(settings, name)
            },
        }
        log(f"app runtime: {app_runtime}")

        rounds: dict[int, list[dict]] = {load: [] for load in loads}
        for pair in range(args.pairs):
            for load in loads:
                ran = {config.label: server_run(config, load) for config in configs_for(load)}
                servers = {label: figures for label, figures in ran.items() if figures is not None}
                chats = new_chats(load)
                connection.close()  # the bench's own connection is not needed while the app runs
                app_chats = asyncio.run(app_round(web_port, chats, PROMPTS[:load]))
                prompt_tokens(app_chats)
                app = summary(app_chats)
                rounds[load].append({"servers": servers, "app": app})
                best = max(servers.values(), key=lambda s: s["total_tok_s"])
                log(
                    f"pair {pair}, {load} chat(s): app {app['total_tok_s']} tok/s, slowest first token "
                    f"{app['ttft_max_ms']} ms; llama-server "
                    + ", ".join(
                        f"{label} {s['total_tok_s']} tok/s {s['ttft_max_ms']} ms"
                        for label, s in servers.items()
                    )
                    + f" (best {best['total_tok_s']})"
                )
    redis.Redis.from_url(REDIS_URL).flushdb()

    result: dict = {
        "bench": "local_concurrency",
        "model": spec.slug,
        "llama_server": str(binary),
        "threads": spec.n_threads,
        "n_ctx_per_chat": spec.n_ctx,
        "max_tokens": args.max_tokens,
        "pairs": args.pairs,
        "database": connection.vendor,
        "app_runtime": app_runtime,
        "llama_server_crashed": crashed,
        "cpu_features": probe.cpu_features(),
        "loads": {},
    }
    for load, pairs in rounds.items():
        result["loads"][str(load)] = load_result(pairs)
    met = []
    for load, figures in result["loads"].items():
        if load == "1":  # one reply: its writing speed; the first token's wait is the ttft goal's
            met.append(figures["ratio_decode_tok_s"] >= 0.95)
        else:
            met.append(figures["ratio_tok_s"] >= 1 and figures["ratio_ttft_max"] <= 1)
    result["targets_met"] = all(met)
    return result


def load_result(pairs: list[dict]) -> dict:
    """Medians over the pairs for one load, each llama-server configuration and the app; the
    ratios are taken within each pair, against that pair's best configuration."""
    labels = [label for label in pairs[0]["servers"] if all(label in p["servers"] for p in pairs)]
    metrics = ("total_tok_s", "per_chat_tok_s", "ttft_max_ms", "ttft_p50_ms")

    def medians(rounds: list[dict]) -> dict:
        figures = {m: median([r[m] for r in rounds if r[m] is not None]) for m in metrics}
        return {**figures, "tokens": rounds[0]["tokens"], "prompt_tokens": rounds[0]["prompt_tokens"]}

    servers = {label: medians([p["servers"][label] for p in pairs]) for label in labels}
    fastest = [max(p["servers"].values(), key=lambda s: s["total_tok_s"]) for p in pairs]
    quickest = [min(p["servers"].values(), key=lambda s: s["ttft_max_ms"]) for p in pairs]
    return {
        "llama_server": servers,
        "best_tok_s": max(labels, key=lambda label: servers[label]["total_tok_s"]),
        "best_ttft_max": min(labels, key=lambda label: servers[label]["ttft_max_ms"]),
        "app": medians([p["app"] for p in pairs]),
        "ratio_tok_s": round(
            statistics.median(
                p["app"]["total_tok_s"] / f["total_tok_s"] for p, f in zip(pairs, fastest, strict=True)
            ),
            3,
        ),
        "ratio_decode_tok_s": round(
            statistics.median(
                p["app"]["per_chat_tok_s"] / max(s["per_chat_tok_s"] for s in p["servers"].values())
                for p in pairs
            ),
            3,
        ),
        "ratio_ttft_max": round(
            statistics.median(
                p["app"]["ttft_max_ms"] / q["ttft_max_ms"] for p, q in zip(pairs, quickest, strict=True)
            ),
            2,
        ),
    }


if __name__ == "__main__":
    main()

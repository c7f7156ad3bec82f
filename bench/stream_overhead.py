"""How much of the model's speed survives the trip to the browser.

(a) raw: llama-cpp-python streaming the bundled model alone in one process, with the
    llama.cpp configuration the app's probe chose on this machine and the thread count
    that is fastest here (1, 2… are tried first);
(b) app, scaled: daphne + Redis channel layer + a `localai worker`, whose model runner
    process writes the reply, as a websocket client sees it;
(c) app, embedded: `localai serve` alone (SQLite, in-memory layer), its runner beside it.

Same prompt, greedy decoding, same max_tokens. Rounds alternate raw, scaled, raw,
embedded… after a warm-up; medians are reported as one JSON line:

    python bench/stream_overhead.py [--runs 9] [--max-tokens 200] [--modes scaled,embedded]

tok/s is the decode rate: (tokens - 1) / (last token seen - first token seen);
ratio_tok_s is the median over the pairs (a raw run, then an app run) of app / raw.
TTFT is from the request (the call, or the socket frame) to the first token seen; the
socket is opened 0.3 s before the frame is sent, as a page is open before anyone types.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    VENV_BIN,
    app_env,
    free_port,
    log,
    median,
    processes,
    report,
    wait_for_http,
)

PROMPT = "Tell me a long story about a lighthouse keeper and a storm."
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


# --- (a) raw llama-cpp-python, in a child process that stays loaded --------------------------
def raw_child(threads: int, max_tokens: int, config: dict) -> None:
    """Reads 'run' lines on stdin, answers each with one JSON line of timings."""
    from models_hub.bundled import BUNDLED_CONTEXT, BUNDLED_SLUG, bundled_model_path
    from models_hub.runner import load
    from models_hub.runner_protocol import LoadSpec, RuntimeConfig

    # Loaded as the runner loads it (the same options), but streamed right here.
    spec = LoadSpec(BUNDLED_SLUG, str(bundled_model_path()), min(BUNDLED_CONTEXT, 4096), threads, 0, "", 0)
    llama = load(spec, RuntimeConfig(**config))
    for _line in sys.stdin:
        start = time.perf_counter()
        first = last = None
        tokens = 0
        for chunk in llama.create_chat_completion(
            messages=[{"role": "user", "content": PROMPT}], stream=True, max_tokens=max_tokens, temperature=0
        ):
            if chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
                tokens += 1
        print(
            json.dumps(
                {"ttft_ms": (first - start) * 1000, "tokens": tokens, "tok_s": (tokens - 1) / (last - first)}
            ),
            flush=True,
        )


class RawRunner:
    def __init__(self, threads: int, max_tokens: int, config: dict) -> None:
        import subprocess

        self.threads = threads
        self.config = config
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--raw-child",
                str(threads),
                "--max-tokens",
                str(max_tokens),
                "--config",
                json.dumps(config),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def fastest_raw(max_tokens: int, config: dict, runs: int = 3) -> tuple[RawRunner | None, float | str]:
    """Try every thread count up to the core count with ``config``; keep the fastest loaded.
    A configuration that crashes llama.cpp here gives (None, how it ended)."""
    best, best_speed = None, -1.0
    for threads in range(1, (os.cpu_count() or 1) + 1):
        runner = RawRunner(threads, max_tokens, config)
        try:
            runner.run()  # warm-up
            speed = median([runner.run()["tok_s"] for _ in range(runs)])
        except (ValueError, BrokenPipeError):  # the child died: no JSON came back
            if best:
                best.close()
            return None, f"crashed (exit {runner.proc.wait()})"
        log(f"raw with {threads} thread(s), {config}: {speed} tok/s")
        if speed > best_speed:
            if best:
                best.close()
            best, best_speed = runner, speed
        else:
            runner.close()
    return best, best_speed


def probed_config() -> dict:
    """What the app's probe chooses for the bundled model here (and remembers for the app)."""
    from models_hub import probe
    from models_hub.runtime import load_spec_for
    from models_hub.services import bundled_model_register

    result = probe.config_for(load_spec_for(bundled_model_register()))
    log(f"probe chose {result.label}: {result.reason}")
    return result.config.as_dict()


# --- (b) the app, through the scaled path ---------------------------------------------------
class AppClient:
    def __init__(self, port: int) -> None:
        from django.conf import settings
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
        from django.contrib.sessions.backends.db import SessionStore

        from accounts.models import User

        self.port = port
        self.user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com", "bench-password-1")
        session = SessionStore()
        session[SESSION_KEY] = str(self.user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = self.user.get_session_auth_hash()
        session.create()
        self.cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"

    def run(self) -> dict:
        from websockets.sync.client import connect

        from chat.services import conversation_create

        # A new conversation each run, so every run sends the very same prompt.
        conversation = conversation_create(owner=self.user)
        url = f"ws://127.0.0.1:{self.port}/ws/chat/{conversation.pk}/"
        with connect(
            url, additional_headers={"Cookie": self.cookie, "Origin": f"http://127.0.0.1:{self.port}"}
        ) as ws:
            # As in the browser, the page's socket is open a moment before anyone sends.
            time.sleep(0.3)
            start = time.perf_counter()
            ws.send(json.dumps({"type": "send", "content": PROMPT}))
            first = last = None
            while True:
                frame = json.loads(ws.recv(timeout=120))
                if frame["type"] == "delta":
                    last = time.perf_counter()
                    first = first or last
                elif frame["type"] == "error":
                    raise RuntimeError(frame["error"])
                elif frame["type"] == "message" and frame["message"]["role"] == "assistant":
                    message = frame["message"]
                    if message["status"] in ("done", "stopped", "failed"):
                        break
        if message["status"] != "done":
            raise RuntimeError(f"reply ended {message['status']}: {message['error']}")
        tokens = message["completion_tokens"]
        return {"ttft_ms": (first - start) * 1000, "tokens": tokens, "tok_s": (tokens - 1) / (last - first)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--modes", default="scaled,embedded")
    parser.add_argument("--raw-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_child:
        raw_child(args.raw_child, args.max_tokens, json.loads(args.config))
        return
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]

    # One SQLite database that every process shares: the scaled stack reaches the others
    # through Redis, the embedded server needs none.
    data_dir = Path(tempfile.mkdtemp(prefix="localai-bench-"))
    embedded_env = app_env(data_dir, CHAT_MAX_TOKENS=str(args.max_tokens), CHAT_TEMPERATURE="0")
    scaled_env = {**embedded_env, "REDIS_URL": REDIS_URL}
    os.environ.update(scaled_env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if "scaled" in modes:  # embedded mode needs no Redis at all
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()

    config = probed_config()
    raw, _ = fastest_raw(args.max_tokens, config)
    localai = str(VENV_BIN / "localai")
    ports = {mode: free_port() for mode in modes}
    commands = []
    if "scaled" in modes:
        commands += [
            (
                [localai, "serve", "--no-migrate", "--port", str(ports["scaled"])],
                scaled_env,
                data_dir / "web.log",
            ),
            (
                [localai, "worker", "--queues", "local", "--loglevel", "warning"],
                scaled_env,
                data_dir / "worker.log",
            ),
        ]
    if "embedded" in modes:
        embedded = ([localai, "serve", "--no-migrate", "--port", str(ports["embedded"])], embedded_env)
        commands.append((*embedded, data_dir / "embedded.log"))
    with processes(*commands):
        apps = {}
        for mode in modes:
            wait_for_http(f"http://127.0.0.1:{ports[mode]}/healthz")
            apps[mode] = AppClient(ports[mode])
            apps[mode].run()  # warm-up: the runner starts and loads the model
            apps[mode].run()
        runs: dict[str, list[tuple[dict, dict]]] = {mode: [] for mode in modes}
        for _ in range(args.runs):
            for mode in modes:
                runs[mode].append((raw.run(), apps[mode].run()))
    raw.close()

    result: dict = {
        "bench": "stream_overhead",
        "config": config,
        "raw_threads": raw.threads,
        "runs": args.runs,
    }
    for mode, pairs in runs.items():
        raw_runs, app_runs = [r for r, _ in pairs], [a for _, a in pairs]
        # Each app run is compared with the raw run just before it: the machine's speed
        # drifts between minutes (other tenants), and a pair shares the same conditions.
        ratios = [app["tok_s"] / raw["tok_s"] for raw, app in pairs]
        raw_ttft, app_ttft = (
            median([r["ttft_ms"] for r in raw_runs]),
            median([r["ttft_ms"] for r in app_runs]),
        )
        result[mode] = {
            "raw_tok_s": median([r["tok_s"] for r in raw_runs]),
            "app_tok_s": median([r["tok_s"] for r in app_runs]),
            "ratio_tok_s": round(statistics.median(ratios), 3),
            "raw_ttft_ms": raw_ttft,
            "app_ttft_ms": app_ttft,
            "ttft_overhead_ms": round(app_ttft - raw_ttft, 1),
            "tokens": [raw_runs[0]["tokens"], app_runs[0]["tokens"]],
        }
    report(result)


if __name__ == "__main__":
    main()

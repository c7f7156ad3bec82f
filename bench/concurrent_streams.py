"""Many people chatting with a cloud model at once, through the scaled path as deployed:
are the replies whole, how long until the first words, and how late are the rest?

A paced, OpenAI-compatible SSE endpoint (asyncio, in its own process so its CPU is not
the app's) streams each reply at --rate tokens/s, stamping every token with the moment it
was written: ``t<index>@<unix ns> ``. It is registered in the app as a cloud provider
with one enabled model.

(a) direct: --streams clients of the openai SDK (``AsyncOpenAI``) stream from the endpoint
    at once, no app in between;
(b) app: --streams people (each their own account, on the default plan), each in a new
    conversation, send over websockets at once through `localai serve` (daphne), Redis
    (pub/sub channel layer, broker, live text) and `localai worker --queues cloud` started
    with its defaults, as the README and docker-compose.yml start it (--workers N: N such).

The two alternate, (a) (b) (a) (b) … for --pairs pairs. First-token wait: from sending to
the first delta. ``first_token_p95_added_ms``: per pair, the app's p95 minus the direct
p95; the median of pairs (likewise p50). Where the app's wait goes: ``app_queued_p95_ms``
until the web process announced the queued reply, ``app_taken_p95_ms`` until a worker
announced it streaming, ``app_after_queued_p95_ms`` from the queued reply to its first delta
(the worker's share, the provider's included). ``interval_*``: time between one delta and the
next on a stream.

Per delta received, the added delay is receive time - write time of the newest token in
it (same machine clock). The app sends deltas in batches every CHAT_FLUSH_INTERVAL_MS
(50 ms), the first at once; a batch goes out when a token arrives, so batching delays
older tokens of a batch, not its newest one.

Each app client checks its reply: final status done (``complete``), and both the text
assembled from the deltas (placed by offset, as chat.js does) and the final message's
content equal exactly what the endpoint wrote for it (``lost_or_doubled`` counts the
replies where either differs). ``cpu_s_per_1k_tokens``: CPU seconds (user + system) of
the web process, the worker, redis-server and, with --database-url on this machine, the
PostgreSQL server while the app streams, per 1,000 tokens delivered (``cpu_s`` per process).
Redis and PostgreSQL are shared with whatever else runs on the machine, so their shares are
upper bounds.

Targets: complete == streams x pairs, lost_or_doubled == 0, first_token_p95_added_ms <= 250,
p95_added_ms <= 100.

    .venv/bin/python bench/concurrent_streams.py [--streams 200] [--tokens 50] [--rate 25]
        [--pairs 2] [--workers 1] [--database-url postgres://…] [--dump delays.json]

SQLite in a temporary data folder by default; --database-url puts the data in a fresh
database on that PostgreSQL server (dropped at the end), as deployed. Redis: BENCH_REDIS_URL, by
default redis://127.0.0.1:6379/12, flushed at the start and the end. One JSON line goes
to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    VENV_BIN,
    bench_environment,
    free_port,
    log,
    median,
    percentile,
    processes,
    report,
    session_cookie,
    wait_for_http,
    wait_for_workers,
)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
LOOPBACK_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
MODEL_NAME = "paced"
FINAL_STATUSES = {"done", "stopped", "failed"}
STREAM_TIMEOUT_S = 120


# --- the paced endpoint (a child process) -----------------------------------------------------
def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chunk(content: str | None, finish_reason: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    return _sse(
        {
            "id": "bench", "object": "chat.completion.chunk", "created": 0, "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )  # fmt: skip


def sse_child(port: int, tokens: int, rate: float) -> None:
    """Serve POST /v1/chat/completions as a paced stream; GET /bench/sent answers, per
    prompt (the last message of a request), the exact text written for it."""
    sent: dict[str, str] = {}
    interval = 1 / rate

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            method, path = request_line.decode("latin-1").split(" ")[:2]
            if method == "GET" and path == "/bench/sent":
                data = json.dumps(sent).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
                )
            elif method == "POST" and path.endswith("/chat/completions"):
                prompt = json.loads(body)["messages"][-1]["content"]
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                    b"Connection: close\r\n\r\n"
                )
                loop = asyncio.get_running_loop()
                start = loop.time()
                pieces = []
                for index in range(tokens):
                    # An absolute schedule: a late wake-up does not slow the whole stream.
                    delay = start + index * interval - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    piece = f"t{index}@{time.time_ns()} "
                    pieces.append(piece)
                    writer.write(_chunk(piece))
                    await writer.drain()
                sent[prompt] = "".join(pieces)
                usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
                writer.write(
                    _chunk(None, "stop")
                    + _sse({"id": "bench", "object": "chat.completion.chunk", "choices": [], "usage": usage})
                    + b"data: [DONE]\n\n"
                )
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a client that went away
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def _stamp_ns(text: str) -> int:
    """The write time of the newest token in ``text`` (``…t<i>@<ns> ``)."""
    return int(text.rstrip().rsplit("@", 1)[1])


# --- (a) direct: the openai SDK on the endpoint, no app in between -----------------------------
@dataclass
class StreamResult:
    prompt: str
    text: str = ""
    delays_ms: list[float] = field(default_factory=list)
    status: str = "none"
    content: str | None = None  # the final message's content (app only)
    gaps: int = 0  # deltas that started past the end of the text so far
    overlaps: int = 0  # deltas that repeated text already received
    first_delta_ms: float | None = None  # from sending to the first delta
    intervals_ms: list[float] = field(default_factory=list)  # between one delta and the next
    seen_ms: dict[str, float] = field(default_factory=dict)  # from sending to each status (app only)
    _last_ns: int = 0

    def received(self, received_ns: int, sent_ns: int) -> None:
        if self.first_delta_ms is None:
            self.first_delta_ms = (received_ns - sent_ns) / 1e6
        else:
            self.intervals_ms.append((received_ns - self._last_ns) / 1e6)
        self._last_ns = received_ns


async def direct_stream(client, prompt: str) -> StreamResult:
    """The stream as a program using the SDK's async client reads it (the app's worker
    uses the same SDK, synchronously, on a thread per reply)."""
    result = StreamResult(prompt)
    sent_ns = time.time_ns()
    stream = await client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": prompt}], stream=True
    )
    async for chunk in stream:
        received_ns = time.time_ns()
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece:
            result.received(received_ns, sent_ns)
            result.text += piece
            result.delays_ms.append((received_ns - _stamp_ns(piece)) / 1e6)
    result.status = "done"
    return result


async def direct_round(port: int, streams: int, tag: str) -> list[StreamResult]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench", max_retries=0)
    try:
        return await asyncio.gather(*(direct_stream(client, f"{tag} stream {i}") for i in range(streams)))
    finally:
        await client.close()


# --- (b) the app: websocket clients through daphne, Redis and the worker ---------------------
async def app_stream(ws, prompt: str) -> StreamResult:
    result = StreamResult(prompt)
    sent_ns = time.time_ns()
    await ws.send(json.dumps({"type": "send", "content": prompt}))
    async for raw in ws:
        received_ns = time.time_ns()
        frame = json.loads(raw)
        if frame["type"] == "delta":
            offset, text = frame["offset"], frame["text"]
            result.received(received_ns, sent_ns)
            # Placed by offset the way chat.js places it (all text here is ASCII, so
            # UTF-16 offsets are character offsets).
            if offset > len(result.text):
                result.gaps += 1
                continue
            if offset < len(result.text):
                result.overlaps += 1
            result.text = (
                result.text[:offset] + text if offset + len(text) > len(result.text) else result.text
            )
            result.delays_ms.append((received_ns - _stamp_ns(text)) / 1e6)
        elif frame["type"] == "message" and frame["message"]["role"] == "assistant":
            message = frame["message"]
            # When the web process queued the reply, and when a worker took it.
            result.seen_ms.setdefault(message["status"], (received_ns - sent_ns) / 1e6)
            if message["status"] in FINAL_STATUSES:
                result.status, result.content = message["status"], message["content"]
                if message["status"] == "failed":
                    log(f"a reply failed: {message['error']}")
                break
        elif frame["type"] == "error":
            log(f"error frame: {frame}")
            result.status = "error"
            break
    return result


async def app_round(
    port: int, chats: list[tuple[str, str]], tag: str, on_start=lambda: None
) -> list[StreamResult]:
    """Open one socket per (session cookie, conversation id), each person's own, then send
    on all of them at once (``on_start`` is called just before)."""
    from websockets.asyncio.client import connect

    origin = f"http://127.0.0.1:{port}"
    # People open their pages over a while, not in one instant: a few handshakes at a time
    # (daphne drops a socket its app has not accepted within 5 s).
    opening = asyncio.Semaphore(20)

    async def open_socket(cookie: str, cid: str):
        async with opening:
            return await connect(
                f"ws://127.0.0.1:{port}/ws/chat/{cid}/",
                additional_headers={"Cookie": cookie, "Origin": origin},
                open_timeout=60,
            )

    sockets = await asyncio.gather(*(open_socket(cookie, cid) for cookie, cid in chats))
    await asyncio.sleep(0.5)  # as a page is open a moment before anyone types
    on_start()
    try:

        async def one(index: int, ws) -> StreamResult:
            prompt = f"{tag} stream {index}"
            try:
                return await asyncio.wait_for(app_stream(ws, prompt), STREAM_TIMEOUT_S)
            except TimeoutError:
                return StreamResult(prompt, status="timeout")

        return await asyncio.gather(*(one(i, ws) for i, ws in enumerate(sockets)))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# --- measuring the app's CPU ------------------------------------------------------------------
def cpu_seconds(processes_by_name: dict, postmaster=None) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds of each process so far, and of the PostgreSQL server."""
    used = {name: tuple(proc.cpu_times()[:2]) for name, proc in processes_by_name.items()}
    if postmaster is not None:
        used["postgres"] = postgres_cpu_seconds(postmaster)
    return used


def postgres_server(connection):
    """The PostgreSQL server's main process, if the data is in PostgreSQL on this machine."""
    import psutil

    if connection.vendor != "postgresql" or connection.settings_dict["HOST"] not in LOOPBACK_HOSTS:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    try:
        return psutil.Process(backend).parent()
    except psutil.Error:
        return None


def postgres_cpu_seconds(postmaster) -> tuple[float, float]:
    """A backend serves one connection and ends with it, so the server's CPU so far is its
    main process's, its ended children's (reaped by it) and its live children's."""
    import psutil

    own = postmaster.cpu_times()
    user, system = own.user + own.children_user, own.system + own.children_system
    for child in postmaster.children():
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue  # ended meanwhile: counted with the reaped ones from the next reading on
        user, system = user + times.user, system + times.system
    return user, system


def redis_process():
    """redis-server's process, if it runs on this machine and we may read it."""
    import psutil
    import redis

    try:
        return psutil.Process(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])
    except (psutil.Error, KeyError):
        return None


def sent_texts(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/sent", timeout=10) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=200, help="people chatting at once")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply")
    parser.add_argument("--rate", type=float, default=25, help="tokens per second per stream")
    parser.add_argument("--pairs", type=int, default=2, help="direct/app rounds, alternating")
    parser.add_argument("--workers", type=int, default=1, help="cloud worker processes, each at its defaults")
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a fresh database is made there")
    parser.add_argument("--dump", type=Path, help="write every delta's delay, per stream, to this JSON file")
    parser.add_argument("--sse-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sse_child:
        sse_child(args.sse_child, args.tokens, args.rate)
        return

    with bench_environment(args.database_url, REDIS_URL=REDIS_URL) as (data_dir, env):
        result = run(args, env, data_dir)
    report(result)


def _first_token_ms(results: list[StreamResult], fraction: float) -> float | None:
    waits = [r.first_delta_ms for r in results if r.first_delta_ms is not None]
    return percentile(waits, fraction) if len(waits) == len(results) else None


def run(args, env: dict[str, str], data_dir: Path) -> dict:
    import django

    django.setup()
    import psutil
    import redis
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from chat.models import CloudModel, CloudProvider, CloudProviderKind
    from chat.services import cloud_provider_save, conversation_create

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(REDIS_URL).flushdb()

    sse_port, web_port = free_port(), free_port()
    provider = cloud_provider_save(
        provider=CloudProvider(
            slug="bench", name="Paced loopback", kind=CloudProviderKind.CUSTOM,
            base_url=f"http://127.0.0.1:{sse_port}/v1",
        ),
        api_key="sk-bench-0123456789",
    )  # fmt: skip
    model = CloudModel.objects.create(provider=provider, name=MODEL_NAME, enabled=True, context_length=4096)
    # One person per stream, each on the default plan, as many people on one instance are.
    # Their default model already, so no send also saves the user row.
    people = [
        User.objects.create_user(f"person{i}@example.com", None, default_model=model.model_id)
        for i in range(args.streams)
    ]
    cookies = [session_cookie(person) for person in people]

    def chats(count: int) -> list[tuple[str, str]]:
        return [
            (cookie, str(conversation_create(owner=person, model_id=model.model_id).pk))
            for person, cookie in zip(people[:count], cookies[:count], strict=True)
        ]

    warm_up = chats(4)
    rounds = [chats(args.streams) for _ in range(args.pairs)]

    localai = str(VENV_BIN / "localai")
    sse_argv = [sys.executable, __file__, "--sse-child", str(sse_port), "--tokens", str(args.tokens)]
    sse_argv += ["--rate", str(args.rate)]
    # As the README and docker-compose.yml start it: no --concurrency.
    worker_argv = [localai, "worker", "--queues", "cloud", "-l", "warning"]
    with processes(
        (sse_argv, env, data_dir / "sse.log"),
        ([localai, "serve", "--port", str(web_port), "--no-migrate"], env, data_dir / "web.log"),
        *(
            ([*worker_argv, "-n", f"bench{i}@%h"], env, data_dir / f"worker{i}.log")
            for i in range(args.workers)
        ),
    ) as (_sse, web, *workers):
        wait_for_http(f"http://127.0.0.1:{sse_port}/bench/sent")
        wait_for_http(f"http://127.0.0.1:{web_port}/healthz")
        wait_for_workers(REDIS_URL, "cloud", args.workers)
        log("endpoint, web and worker are up")
        postmaster = postgres_server(connection)
        connection.close()  # the bench's own connection is not needed while they run

        asyncio.run(app_round(web_port, warm_up, "warm-up"))
        asyncio.run(direct_round(sse_port, 4, "warm-up direct"))

        measured_processes = {"web": psutil.Process(web.pid)}
        measured_processes.update({f"worker{i or ''}": psutil.Process(w.pid) for i, w in enumerate(workers)})
        if (redis_server := redis_process()) is not None:
            measured_processes["redis"] = redis_server
        load_before = os.getloadavg()[0]
        psutil.cpu_percent()  # starts the machine-wide count
        cpu_used = dict.fromkeys(cpu_seconds(measured_processes, postmaster), 0.0)
        app_wall_s = 0.0
        pairs: list[tuple[list[StreamResult], list[StreamResult]]] = []
        for index, round_chats in enumerate(rounds):  # A B A B: direct, then the app
            started = time.monotonic()
            direct = asyncio.run(direct_round(sse_port, args.streams, f"direct {index}"))
            log(f"direct {index}: {len(direct)} streams in {time.monotonic() - started:.1f}s")
            before: dict = {}

            def start_counting(before=before) -> None:  # the sockets are open: from here on is the run
                before.update(cpu=cpu_seconds(measured_processes, postmaster), started=time.monotonic())

            app = asyncio.run(app_round(web_port, round_chats, f"app {index}", start_counting))
            app_wall_s += time.monotonic() - before["started"]
            after = cpu_seconds(measured_processes, postmaster)
            for name in cpu_used:
                cpu_used[name] += sum(after[name]) - sum(before["cpu"][name])
            log(f"app {index}: {len(app)} streams in {time.monotonic() - before['started']:.1f}s")
            pairs.append((direct, app))
        machine_cpu = psutil.cpu_percent()
        rss_mb = {name: round(proc.memory_info().rss / 2**20, 1) for name, proc in measured_processes.items()}
        worker_threads = {name: proc.num_threads() for name, proc in measured_processes.items()}
        sent = sent_texts(sse_port)
    redis.Redis.from_url(REDIS_URL).flushdb()

    directs = [r for direct, _ in pairs for r in direct]
    apps = [r for _, app in pairs for r in app]
    if args.dump:
        delays = {"app": [r.delays_ms for r in apps], "direct": [r.delays_ms for r in directs]}
        args.dump.write_text(json.dumps(delays))
    complete = sum(r.status == "done" for r in apps)
    broken = [r for r in apps if r.text != sent.get(r.prompt) or r.content != sent.get(r.prompt)]
    for r in broken[:5]:
        log(f"{r.prompt}: status {r.status}, {len(r.text)} chars from deltas, final {len(r.content or '')}, "
            f"sent {len(sent.get(r.prompt, ''))}, {r.gaps} gaps, {r.overlaps} overlaps")  # fmt: skip
    direct_broken = sum(r.text != sent.get(r.prompt) for r in directs)
    tokens = sum((r.content or "").count("@") for r in apps if r.status == "done")
    app_delays = [d for r in apps for d in r.delays_ms]
    direct_delays = [d for r in directs for d in r.delays_ms]
    cpu_total = sum(cpu_used.values())
    p95_added = percentile(app_delays, 0.95) if app_delays else None

    def added(fraction: float) -> list[float] | None:
        """Per pair: the app's first-token wait at ``fraction`` minus the direct one's."""
        values = [
            (_first_token_ms(app, fraction), _first_token_ms(direct, fraction)) for direct, app in pairs
        ]
        return None if any(None in v for v in values) else [round(a - d, 1) for a, d in values]  # type: ignore[operator]

    first_p50_added, first_p95_added = added(0.5), added(0.95)
    first_p95 = median(first_p95_added) if first_p95_added else None
    app_intervals = [d for r in apps for d in r.intervals_ms]
    direct_intervals = [d for r in directs for d in r.intervals_ms]
    return {
        "bench": "concurrent_streams",
        "database": connection.vendor,
        "streams": args.streams,
        "pairs": args.pairs,
        "complete": complete,
        "lost_or_doubled": len(broken),
        "first_token_p50_added_ms": median(first_p50_added) if first_p50_added else None,
        "first_token_p95_added_ms": first_p95,
        "first_token_p95_added_per_pair": first_p95_added,
        "first_token_app_p50_ms": _first_token_ms(apps, 0.5),
        "first_token_app_p95_ms": _first_token_ms(apps, 0.95),
        "first_token_direct_p50_ms": _first_token_ms(directs, 0.5),
        "first_token_direct_p95_ms": _first_token_ms(directs, 0.95),
        # Where the app's wait goes: until the web process queued the reply, a worker took it.
        "app_queued_p95_ms": percentile([r.seen_ms.get("queued", 0) for r in apps], 0.95),
        "app_taken_p95_ms": percentile([r.seen_ms.get("streaming", 0) for r in apps], 0.95),
        # From the queued reply to its first delta: the worker's share, with the provider's.
        "app_after_queued_p95_ms": percentile(
            [
                r.first_delta_ms - r.seen_ms["queued"]
                for r in apps
                if r.first_delta_ms and "queued" in r.seen_ms
            ],
            0.95,
        ),
        "p95_added_ms": p95_added,
        "p95_direct_ms": percentile(direct_delays, 0.95) if direct_delays else None,
        "p50_added_ms": median(app_delays) if app_delays else None,
        "p50_direct_ms": median(direct_delays) if direct_delays else None,
        "max_added_ms": round(max(app_delays), 1) if app_delays else None,
        "interval_p50_ms": {"app": median(app_intervals), "direct": median(direct_intervals)},
        "interval_p95_ms": {
            "app": percentile(app_intervals, 0.95),
            "direct": percentile(direct_intervals, 0.95),
        },
        "cpu_s_per_1k_tokens": round(cpu_total / (tokens / 1000), 3) if tokens else None,
        "cpu_s": {name: round(value, 2) for name, value in cpu_used.items()},
        "rss_mb": rss_mb,
        "threads": worker_threads,
        "tokens": tokens,
        "deltas": len(app_delays),
        "delta_gaps": sum(r.gaps for r in apps),
        "delta_overlaps": sum(r.overlaps for r in apps),
        "app_wall_s": round(app_wall_s, 2),
        "direct_mismatches": direct_broken,
        "machine_cpu_percent": machine_cpu,
        "load_before": round(load_before, 2),
        "workers": args.workers,
        "tokens_per_stream": args.tokens,
        "rate": args.rate,
        "targets_met": complete == len(apps)
        and not broken
        and first_p95 is not None
        and first_p95 <= 250
        and p95_added is not None
        and p95_added <= 100,
    }


if __name__ == "__main__":
    main()

"""The host's side of the model runner: start it, talk to it, notice when it dies.

The host is the process that owns local models: ``localai serve`` in embedded mode, a
``localai worker`` serving the ``local`` queues in scaled mode. It never imports llama.cpp;
it starts one runner (``models_hub.runner``) and multiplexes every request over one socket
pair. A reader thread routes each answer to the request that asked. When the runner dies,
for whatever reason, the socket closes: every request in flight gets ``RunnerCrashed`` at
once, saying how the process ended, and the next request starts a new runner after a
back-off that grows with crashes in a row (a model that kills its runner on every load must
not turn into a tight restart loop).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

from .runner_protocol import RUNNER_MODULE, BuildInfo, GenerateRequest, TokenizeRequest

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 60
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0


class RunnerCrashed(Exception):
    """The runner process ended while a request was in flight."""

    def __init__(self, how: str, returncode: int | None = None) -> None:
        super().__init__(how)
        self.how = how  # "signal 11 (SIGSEGV)", "exit code 1"
        self.returncode = returncode


class RunnerError(Exception):
    """The runner answered a request with an error (``kind`` from runner_protocol)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            return f"signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class _Runner:
    """One live runner process and the requests in flight on it."""

    def __init__(self, env: dict[str, str], on_state: Callable[[list[dict]], None]) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", RUNNER_MODULE, "serve", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self._pending: dict[int, queue.SimpleQueue] = {}
        self._pending_lock = threading.Lock()
        self._on_state = on_state
        self.alive = True
        self.summary: list[dict] = []
        if not self._conn.poll(_START_TIMEOUT_S):
            self.process.kill()
            raise RunnerCrashed("it did not start in time")
        try:
            kind, info = self._conn.recv()
        except (EOFError, OSError):
            returncode = self.process.wait()
            raise RunnerCrashed(exit_description(returncode), returncode) from None
        self.info: BuildInfo = info
        threading.Thread(target=self._read, name="localai-runner-reader", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, kind: str, payload: object = None) -> tuple[int, queue.SimpleQueue]:
        answers: queue.SimpleQueue = queue.SimpleQueue()
        request_id = next(_ids)
        with self._pending_lock:
            if not self.alive:
                raise RunnerCrashed(exit_description(self.process.poll()), self.process.poll())
            self._pending[request_id] = answers
        self.send(kind, request_id, payload)
        return request_id, answers

    def send(self, *message: object) -> None:
        try:
            with self._send_lock:
                self._conn.send(message)
        except OSError:
            pass  # it died: the reader tells every request in flight

    def done(self, request_id: int) -> None:
        with self._pending_lock:
            self._pending.pop(request_id, None)

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "state":
                self.summary = message[1]
                self._on_state(self.summary)
                continue
            with self._pending_lock:
                answers = self._pending.get(message[1])
            if answers is not None:
                answers.put(message)
        self._conn.close()
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait()
        how = exit_description(returncode)
        with self._pending_lock:
            self.alive = False
            pending, self._pending = self._pending, {}
        self.summary = []
        self._on_state(self.summary)
        for answers in pending.values():
            answers.put(("crashed", None, how, returncode))
        if pending or returncode not in (0, -signal.SIGTERM):
            logger.error("The model runner (pid %s) stopped: %s", self.process.pid, how)

    def stop(self) -> None:
        """End the process; the reader sees the socket close and cleans up."""
        with self._pending_lock:
            self.alive = False
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


_ids = itertools.count(1)


class Supervisor:
    """Keeps one runner going for this process."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}  # added to the runner's environment (tests set faults here)
        self.state_changed = threading.Event()  # set when the loaded models change
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._runner: _Runner | None = None
        self._crashes_in_a_row = 0
        self._not_before = 0.0

    def _on_state(self, _summary: list[dict]) -> None:
        self.state_changed.set()

    def runner(self) -> _Runner:
        """The live runner, started (after any back-off) when there is none."""
        with self._lock:
            if self._runner is not None and self._runner.alive:
                return self._runner
            if self._runner is not None:
                self._runner = None
                self._back_off()
            wait = self._not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                self._runner = _Runner({**os.environ, **self.env}, self._on_state)
            except RunnerCrashed:
                self._back_off()
                raise
            return self._runner

    def _back_off(self) -> None:
        self._crashes_in_a_row += 1
        delay = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (self._crashes_in_a_row - 1))
        self._not_before = time.monotonic() + delay

    def healthy(self) -> None:
        """A request finished well: the next crash starts the back-off from the beginning."""
        self._crashes_in_a_row = 0

    def current(self) -> _Runner | None:
        runner = self._runner
        return runner if runner is not None and runner.alive else None

    def stop(self) -> None:
        """End the runner (its models are unloaded); the next request starts another."""
        with self._lock:
            runner, self._runner = self._runner, None
            self._crashes_in_a_row = 0
            self._not_before = 0.0
        if runner is not None:
            runner.stop()

    # --- Requests --------------------------------------------------------------------

    def generate(self, request: GenerateRequest, cancelled: Callable[[], bool]) -> Iterator[str | tuple]:
        """The reply's pieces of text as the runner writes them, then (prompt tokens,
        completion tokens, prompt tokens found in the cache). Once ``cancelled()`` is true
        the runner stops after its current token; the counts still come."""
        runner = self.runner()
        request_id, answers = runner.request("generate", request)
        cancel_sent = answered = False
        try:
            while True:
                kind, _, *rest = answers.get()
                if kind == "token":
                    yield rest[0]
                    if not cancel_sent and cancelled():
                        runner.send("cancel", request_id)
                        cancel_sent = True
                    continue
                answered = True
                if kind == "done":
                    self.healthy()
                    yield tuple(rest)
                    return
                if kind == "error":
                    raise RunnerError(*rest)
                raise RunnerCrashed(*rest)
        finally:
            if not (answered or cancel_sent):
                runner.send("cancel", request_id)  # the caller walked away mid-reply
            runner.done(request_id)

    def forget(self, cache_keys: list[str]) -> None:
        """Drop what the runner keeps of these conversations (``GenerateRequest.prompt_cache_key``).
        Requests sent after this one find none of it. A runner not running keeps nothing."""
        runner = self.current()
        if runner is not None and cache_keys:
            runner.send("forget", next(_ids), cache_keys)

    def call(self, kind: str, request: TokenizeRequest | None = None) -> object:
        runner = self.runner()
        request_id, answers = runner.request(kind, request)
        try:
            answer_kind, _, *rest = answers.get()
        finally:
            runner.done(request_id)
        if answer_kind == "result":
            return rest[0]
        if answer_kind == "error":
            raise RunnerError(*rest)
        raise RunnerCrashed(*rest)


supervisor = Supervisor()


# A forked child (a test server, a pre-forking web server) does not own its parent's
# runner: it starts its own on first use.
os.register_at_fork(after_in_child=supervisor._reset)
atexit.register(supervisor.stop)

"""Several replies on one loaded model at once (continuous batching), with the real llama.cpp.

Requests go through the real supervisor to a real runner process, as replies do; the
bundled model writes greedily, so a reply's text is the same whenever it is written.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from models_hub.bundled import bundled_model_path
from models_hub.runner_protocol import (
    ERROR_CONTEXT,
    GenerateRequest,
    LoadSpec,
    RuntimeConfig,
    TokenizeRequest,
)
from models_hub.supervisor import RunnerCrashed, RunnerError, supervisor
from tests.models_hub.test_runner import MIB, config_here, limits
from tests.waiting import wait_until

TOPICS = ("dragons", "boats", "apples", "clouds")


@pytest.fixture(autouse=True)
def fresh_runner():
    supervisor.stop()
    yield
    supervisor.stop()


def spec(parallel: int, n_ctx: int = 1024) -> LoadSpec:
    return LoadSpec(
        slug="smol",
        path=str(bundled_model_path()),
        n_ctx=n_ctx,
        n_threads=2,
        n_gpu_layers=0,
        chat_template="",
        memory_bytes=250 * MIB,
        parallel=parallel,
    )


def story(topic: str) -> list[dict]:
    return [{"role": "user", "content": f"Write a long story about {topic}."}]


def request(
    load: LoadSpec,
    messages: list[dict],
    key: str = "",
    max_tokens: int = 40,
    config: RuntimeConfig | None = None,
    **extra,
) -> GenerateRequest:
    return GenerateRequest(
        spec=load,
        config=config or config_here(),
        limits=limits(1000),
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        prompt_cache_key=key,
        **extra,
    )


@dataclass
class Stream:
    """One reply read on a thread of its own, as a worker's task reads it."""

    request: GenerateRequest
    stop: threading.Event = field(default_factory=threading.Event)
    texts: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each piece came
    counts: tuple = ()
    error: BaseException | None = None
    first_at: float = 0.0
    ended_at: float = 0.0

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._read)
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            for piece in supervisor.generate(self.request, cancelled=self.stop.is_set):
                if isinstance(piece, str):
                    self.first_at = self.first_at or time.monotonic()
                    self.texts.append(piece)
                    self.times.append(time.monotonic())
                else:
                    self.counts = piece
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc
        self.ended_at = time.monotonic()

    def join(self) -> Stream:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive()
        return self

    @property
    def text(self) -> str:
        return "".join(self.texts)


def alone(req: GenerateRequest) -> Stream:
    return Stream(req).start().join()


def loaded_model() -> dict:
    [model] = supervisor.call("summary")
    return model


# Both ways of writing replies together, each safe on every CPU: plain weights take every
# reply's token in one batch; repacked weights with a micro-batch of one take one call per
# reply, since several at once fault where llama.cpp's AMX kernels were miscompiled
# (scripts/gcc_amx_tile_fix.h says how).
@pytest.mark.parametrize(
    "config",
    [RuntimeConfig(use_extra_bufts=False), RuntimeConfig(n_ubatch=1)],
    ids=["one-batch", "call-per-reply"],
)
def test_replies_written_together_have_the_text_each_has_alone(config):
    load = spec(parallel=4)
    by_itself = {topic: alone(request(load, story(topic), config=config)) for topic in TOPICS}
    together = {topic: Stream(request(load, story(topic), config=config)).start() for topic in TOPICS}
    for topic, stream in together.items():
        stream.join()
        assert stream.error is None
        assert stream.text == by_itself[topic].text and len(stream.text) > 50
        assert stream.counts[:2] == by_itself[topic].counts[:2]
    # They were written at once: each started before the others ended.
    assert max(s.first_at for s in together.values()) < min(s.ended_at for s in together.values())


def test_stopping_one_reply_leaves_the_others_writing():
    load = spec(parallel=3)
    streams = [Stream(request(load, story(topic), max_tokens=80)).start() for topic in TOPICS[:3]]
    wait_until(lambda: all(s.texts for s in streams), timeout=60, what="all three to start")
    streams[0].stop.set()
    for stream in streams:
        stream.join()
    stopped, *others = streams
    assert stopped.error is None and stopped.counts[1] < 40
    for stream, topic in zip(others, TOPICS[1:3], strict=True):
        assert stream.error is None and stream.counts[1] == 80
        assert stream.text == alone(request(load, story(topic), max_tokens=80)).text


def test_a_runner_crash_fails_every_reply_in_the_batch_and_the_next_ones_work():
    load = spec(parallel=4)
    streams = [Stream(request(load, story(topic), max_tokens=400)).start() for topic in TOPICS]
    wait_until(lambda: all(s.texts for s in streams), timeout=60, what="all four to start")
    os.kill(supervisor.runner().pid, signal.SIGSEGV)
    for stream in streams:
        stream.join()
        assert isinstance(stream.error, RunnerCrashed) and "SIGSEGV" in stream.error.how
    after = [Stream(request(load, story(topic))).start() for topic in TOPICS[:2]]
    assert all(s.join().error is None and s.text for s in after)


def test_one_persons_many_replies_do_not_take_every_slot():
    load = spec(parallel=2)
    # Ann's first two replies hold both slots; her first ends long before her second. Each
    # is sent once the one before is in the runner, as a person's sends come one by one.
    anns = []
    for i, (topic, tokens) in enumerate(zip(TOPICS[:3], (150, 300, 30), strict=True)):
        anns.append(Stream(request(load, story(topic), key=f"ann.{i}", max_tokens=tokens)).start())
        wait_until(
            lambda n=i + 1: sum(loaded_model()[k] for k in ("active", "waiting")) == n,
            timeout=60,
            what=f"reply {i}",
        )
    bob = Stream(request(load, story("boats"), key="bob.1", max_tokens=30)).start()
    wait_until(lambda: loaded_model()["waiting"] == 2, timeout=60, what="Bob's reply to wait too")
    assert not anns[0].ended_at, "both of Ann's first replies still hold the slots"
    for stream in [*anns, bob]:
        stream.join()
        assert stream.error is None
    # Bob came after Ann's third reply, and gets the first slot that frees: it goes to
    # whoever has fewer replies being written.
    assert bob.first_at < anns[2].first_at


def test_the_model_says_how_many_replies_it_writes_and_holds():
    load = spec(parallel=2)
    streams = [
        Stream(request(load, story(t), key=f"p{i}.c", max_tokens=200)).start()
        for i, t in enumerate(TOPICS[:3])
    ]
    wait_until(
        lambda: (loaded_model()["active"], loaded_model()["waiting"]) == (2, 1),
        timeout=60,
        what="two writing",
    )
    assert loaded_model()["parallel"] == 2
    for stream in streams:
        stream.join()
    model = loaded_model()
    assert (model["active"], model["waiting"]) == (0, 0)
    assert model["prompts_held"] == 3  # two in the slots, the first one's copied out for the third


def follow_up(messages: list[dict], reply: str) -> list[dict]:
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": "Say more."}]


def test_each_conversation_keeps_its_slot_between_turns_until_it_is_forgotten():
    load = spec(parallel=3)
    firsts = {t: Stream(request(load, story(t), key=f"{t}.1")).start() for t in TOPICS[:3]}
    for stream in firsts.values():
        assert stream.join().error is None and stream.counts[2] == 0
    # All three at once again, each continuing its own conversation from its own slot.
    seconds = {
        t: Stream(request(load, follow_up(story(t), s.text), key=f"{t}.1")).start() for t, s in firsts.items()
    }
    for topic, stream in seconds.items():
        assert stream.join().error is None
        assert stream.counts[2] >= firsts[topic].counts[0], "the whole first turn found in the slot"
    supervisor.forget([f"{t}.1" for t in TOPICS[:3]])
    wait_until(lambda: loaded_model()["prompts_held"] == 0, timeout=10, what="the slots to be emptied")
    again = alone(request(load, follow_up(story("dragons"), firsts["dragons"].text), key="dragons.1"))
    assert again.counts[2] == 0
    supervisor.stop()  # nothing of the forgotten conversation changed the reply
    assert again.text == alone(request(load, follow_up(story("dragons"), firsts["dragons"].text))).text


def test_replies_returning_to_slots_apart_are_moved_side_by_side():
    # llama.cpp reads a batch in one pass only over neighbouring sequences: two replies in
    # slots 0 and 2 would take two passes a step, as long as three.
    plain = RuntimeConfig(use_extra_bufts=False)  # every reply's token in one batch
    load = spec(parallel=4)

    def first_turns() -> dict[str, Stream]:  # in slots 0-3, in a fresh runner
        supervisor.stop()
        return {t: alone(request(load, story(t), key=f"{t}.1", config=plain)) for t in TOPICS}

    def second_turn(first: dict[str, Stream], topic: str) -> GenerateRequest:
        messages = follow_up(story(topic), first[topic].text)
        return request(load, messages, key=f"{topic}.1", config=plain, max_tokens=120)

    returning = ("dragons", "apples")  # slots 0 and 2
    firsts = first_turns()
    from_their_slots = {t: alone(second_turn(firsts, t)).text for t in returning}
    firsts = first_turns()
    together = {t: Stream(second_turn(firsts, t)).start() for t in returning}
    runs = []
    while not any(s.ended_at for s in together.values()):
        if all(s.texts for s in together.values()):
            runs.append(loaded_model()["writing_runs"])
        time.sleep(0.01)
    for topic, stream in together.items():
        assert stream.join().error is None
        assert stream.text == from_their_slots[topic], "a reply moved to another slot goes on the same"
        assert stream.counts[2] >= firsts[topic].counts[0], "its first turn was found in its slot"
    assert runs and runs[-1] == 1
    # The conversation pushed aside to make room was kept, and its next turn finds it.
    boats = alone(second_turn(firsts, "boats"))
    assert boats.error is None and boats.counts[2] >= firsts["boats"].counts[0]


def test_a_reply_ending_between_two_others_leaves_no_gap():
    plain = RuntimeConfig(use_extra_bufts=False)
    load = spec(parallel=3)
    tokens = {"dragons": 150, "boats": 10, "apples": 150}  # in slots 0, 1 and 2
    by_itself = {
        t: alone(request(load, story(t), config=plain, max_tokens=n)).text for t, n in tokens.items()
    }
    supervisor.stop()
    streams = {}
    for topic, n in tokens.items():  # one after another: each takes the lowest empty slot
        streams[topic] = Stream(
            request(load, story(topic), key=f"{topic}.1", config=plain, max_tokens=n)
        ).start()
        wait_until(lambda s=streams[topic]: s.texts, timeout=60, what=f"{topic} to start")
    outer = (streams["dragons"], streams["apples"])
    runs = []
    while not any(s.ended_at for s in outer):
        if streams["boats"].ended_at:
            runs.append(loaded_model()["writing_runs"])
        time.sleep(0.01)
    for topic, stream in streams.items():
        assert stream.join().error is None and stream.text == by_itself[topic]
    assert runs and runs[-1] == 1, "the reply in slot 2 moved to slot 1"


def test_a_persons_new_conversation_takes_an_empty_slot_rather_than_push_out_their_other():
    load = spec(parallel=2)
    first = alone(request(load, story("dragons"), key="ann.1", max_tokens=120))
    # The new one shares only the template's start with the first: an empty slot is there.
    alone(request(load, story("boats"), key="ann.2"))
    model = loaded_model()
    assert (model["prompts_held"], model["prompts_kept_bytes"]) == (2, 0), "nothing copied out"
    again = alone(request(load, follow_up(story("dragons"), first.text), key="ann.1"))
    assert again.counts[2] >= first.counts[0]
    # No slot is empty now: the least recently used conversation is copied out for a third.
    alone(request(load, story("clouds"), key="ann.3"))
    model = loaded_model()
    assert model["prompts_held"] == 3 and model["prompts_kept_bytes"] > 0


def test_a_persons_new_conversation_borrows_a_start_another_of_theirs_holds_and_nobody_elses():
    plain = RuntimeConfig(use_extra_bufts=False)  # the same text whatever the batch's size
    load = spec(parallel=3)
    first = alone(request(load, story("dragons"), key="ann.1", config=plain))
    # The same question in a new conversation: an empty slot, and the start copied into it.
    second = alone(request(load, story("dragons"), key="ann.2", config=plain))
    assert second.counts[2] == second.counts[0] - 1, "all but the prompt's last token borrowed"
    assert second.text == first.text
    model = loaded_model()
    assert (model["prompts_held"], model["prompts_kept_bytes"]) == (2, 0), "nothing copied out"
    again = alone(request(load, follow_up(story("dragons"), first.text), key="ann.1", config=plain))
    assert again.counts[2] >= first.counts[0], "the lender kept its conversation"
    # Someone else asking the same starts from nothing.
    bob = alone(request(load, story("dragons"), key="bob.1", config=plain))
    assert bob.counts[2] == 0 and bob.text == first.text


def test_a_stop_string_ends_a_batched_reply_before_it():
    load = spec(parallel=2)
    full = alone(request(load, story("dragons"), max_tokens=60)).text
    word = full.split()[8]
    cut = alone(request(load, story("dragons"), max_tokens=60, stop=(word,)))
    assert cut.text == full[: full.index(word)]


def test_a_long_prompt_is_read_without_stopping_the_replies_being_written():
    load = spec(parallel=2)
    writing = Stream(request(load, story("boats"), max_tokens=400)).start()
    wait_until(lambda: writing.texts, timeout=60, what="the first reply to start")
    started = time.monotonic()
    reading = Stream(
        request(load, [{"role": "user", "content": "Sum this up: " + "apples and pears. " * 150}])
    )
    reading.start().join()
    assert reading.error is None and reading.counts[0] > 600
    # The other reply went on while the 600 tokens were read a piece at a time: no pause in
    # its text came near the time the reading took (in one piece, most of it).
    during = [started, *(at for at in writing.times if started < at < reading.first_at), reading.first_at]
    longest_pause = max(later - earlier for earlier, later in itertools.pairwise(during))
    assert len(during) > 5 and longest_pause < 0.4 * (reading.first_at - started)
    assert writing.join().error is None


def _threads(pid: int) -> int:
    return int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def test_a_model_nobody_writes_with_holds_no_threads():
    # OpenMP threads left waiting beside a thread that computes make libgomp sleep in the
    # kernel at every step, several times slower: the decoder's threads end with its work.
    load = spec(parallel=2)
    assert supervisor.call("summary") == []  # the runner serves, nothing loaded
    runner = supervisor.runner().pid
    idle = _threads(runner)
    tokenize = TokenizeRequest(spec=load, config=config_here(), limits=limits(1000), texts=["hi"])
    assert supervisor.call("tokenize", tokenize) == [1]  # loaded
    streams = [Stream(request(load, story(topic), max_tokens=60)).start() for topic in TOPICS[:2]]
    wait_until(lambda: all(s.texts for s in streams), timeout=60, what="both replies to start")
    assert _threads(runner) > idle
    assert all(s.join().error is None for s in streams)
    wait_until(lambda: _threads(runner) == idle, timeout=10, what="the decoder's threads to end")


def test_a_prompt_longer_than_a_slot_is_refused_and_the_others_go_on():
    load = spec(parallel=2, n_ctx=256)
    writing = Stream(request(load, story("boats"), max_tokens=100)).start()
    too_long = alone(request(load, [{"role": "user", "content": "apples " * 400}]))
    assert isinstance(too_long.error, RunnerError) and too_long.error.kind == ERROR_CONTEXT
    assert writing.join().error is None and writing.counts[1] > 0

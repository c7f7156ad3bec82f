"""Continuous batching: one loaded text model writing several replies at once.

A model loaded with ``LoadSpec.parallel`` slots has a llama.cpp context of that many
sequences, each with the model's whole window. One thread per model, its decoder, owns the
context. Each step it evaluates one batch that holds the next token of every reply being
written and the next piece of every prompt being read, then samples each reply's next token
from that reply's own row of logits, with that reply's own sampler. Replies join between steps
and leave when they finish or are stopped, without disturbing the others. More replies than
slots wait, and a slot that frees goes to whoever among the waiting has the fewest replies
being written: one person's many conversations cannot hold every slot.

A slot keeps its last conversation's tokens in its KV cache, so that conversation's next turn
evaluates only what is new. A reply takes, in this order: the slot that holds its
conversation; a free slot holding a conversation of the same person's that its prompt
continues (an API client sending a whole history again); an empty slot; the free slot whose
conversation, the same person's, shares the longest start with its prompt; the slot least
recently used. Where another slot of the same person's holds a longer start of the prompt than
the slot taken (a persona's system prompt, the same question asked in a new conversation), that
start is copied in rather than evaluated again. A slot handed to another conversation first
copies its own out to the store, which keeps it while memory allows; a conversation kept there
is copied back into whichever slot its next turn takes (see ``PromptStore``). Nobody's reply
starts from someone else's tokens.

Slots are llama.cpp sequences, each with a stream of its own, and llama.cpp evaluates a batch
in one pass only over sequences with consecutive ids: replies in slots 0, 2, 4 and 6 take four
passes a step, as long as eight replies in 0-7 take (on two cores, 35-43 ms a step against
22-28 for slots 0-3), and people coming back to their conversations land in such slots. So
where a batch is evaluated at once, once the replies being written have stayed the same for
``SETTLED_STEPS`` steps with none waiting, those apart are moved together: llama.cpp copies a
reply's whole stream (~10 ms for the bundled model) into a free slot among the others, whose
conversation goes to the store first. Not at once: in a burst the next replies are on their
way to the slots that hold their conversations, which a move would push out.

Runs in the model runner only (it imports llama.cpp).
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaSampler

from .runner_protocol import GenerateRequest

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from .tokenizing import Tokenizer

# llama-cpp-python's own defaults for a chat completion, so that a reply samples as it did
# when written through ``Llama.create_chat_completion``.
_TOP_K = 40
_MIN_P = 0.05
_TOP_P = 0.95


def person_of(cache_key: str) -> str:
    """The person part of a prompt cache key ("<person>.<conversation>")."""
    return cache_key.partition(".")[0]


@dataclass(slots=True)
class PromptState:
    """A conversation's evaluated tokens and their KV cache, copied out of a slot."""

    tokens: list[int]
    kv: np.ndarray  # of bytes; its first ``kv_bytes`` are the state
    kv_bytes: int
    last_used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        return len(self.tokens) * ctypes.sizeof(ctypes.c_int32) + self.kv.nbytes


class PromptStore(Protocol):
    """Where a slot's conversation goes when the slot is needed for another (the runner's
    model cache: kept prompts count against its memory budget)."""

    def prompt_room(self) -> int:
        """Bytes a prompt copied out may take now."""

    def prompt_keep(self, cache_key: str, state: PromptState) -> None: ...

    def prompt_take(self, cache_key: str) -> PromptState | None: ...

    def is_forgotten(self, cache_key: str) -> bool: ...


class _Reply:
    """One reply: its prompt, its sampler, and how far it has come."""

    def __init__(
        self, request: GenerateRequest, prompt: list[int], emit: Callable[[str], None], cancelled
    ) -> None:
        self.cache_key = request.prompt_cache_key
        self.person = person_of(self.cache_key)
        self.prompt = prompt
        self.max_tokens = request.max_tokens
        self.stops = [stop for stop in request.stop if stop]
        self.emit = emit
        self.cancelled: Callable[[], bool] = cancelled
        self.sampler = _sampler(request)
        self.pending: list[int] = []  # prompt tokens not yet evaluated
        self.next_token: int | None = None  # sampled, to be evaluated in the next step
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.finished = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # text that may be the start of a stop string
        self.done = threading.Event()
        self.error: BaseException | None = None

    def take(self, piece: bytes) -> bool:
        """Add a sampled token's bytes; answers whether a stop string ended the reply."""
        self._held += self._utf8.decode(piece)
        cut = min((at for at in (self._held.find(stop) for stop in self.stops) if at >= 0), default=-1)
        if cut >= 0:
            self._send(self._held[:cut])
            self._held = ""
            return True
        keep = max((_prefix_overlap(self._held, stop) for stop in self.stops), default=0)
        self._send(self._held[: len(self._held) - keep])
        self._held = self._held[len(self._held) - keep :]
        return False

    def flush(self) -> None:
        self._send(self._held + self._utf8.decode(b"", final=True))
        self._held = ""

    def _send(self, text: str) -> None:
        if text:
            self.emit(text)

    def counts(self) -> tuple[int, int, int]:
        return len(self.prompt), self.completion_tokens, self.cached_tokens


def _prefix_overlap(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop`` (shorter than it)."""
    for length in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0


def _sampler(request: GenerateRequest) -> LlamaSampler:
    sampler = LlamaSampler()
    if request.temperature == 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(_TOP_K)
    sampler.add_top_p(_TOP_P if request.top_p is None else request.top_p, 1)
    sampler.add_min_p(_MIN_P, 1)
    sampler.add_temp(request.temperature)
    sampler.add_dist(llama_cpp.LLAMA_DEFAULT_SEED if request.seed is None else request.seed)
    return sampler


@dataclass(slots=True, eq=False)
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what its KV cache holds, in order
    owner: str = ""  # the prompt cache key of the conversation those tokens are
    reply: _Reply | None = None
    last_used: float = 0.0


def _bytes_at(array: np.ndarray):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def _runs(seq_ids: frozenset[int]) -> int:
    """How many groups of consecutive ids ``seq_ids`` make."""
    return sum(seq_id - 1 not in seq_ids for seq_id in seq_ids)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# Tokens a reply writes in a row before the next reply's turn, where replies are written one
# call each (``RuntimeConfig.batches_sequences`` false): 8 tokens take ~50 ms on a small model.
RUN_PER_CALL_REPLY = 8
# Prompt tokens read in one step while other replies are being written: ~0.2 s on two cores.
PROMPT_PIECE_WHILE_WRITING = 64
# Steps the replies being written stay the same, none waiting, before those apart are moved
# together: ~0.1-0.3 s, by which a burst of replies has reached its slots.
SETTLED_STEPS = 8
# A start of the prompt at least this long, held in another slot of the same person's, is
# copied into a reply's slot instead of evaluated again: llama.cpp copies the slot's whole stream
# (~10 ms for the bundled model), as long as 10-40 prompt tokens take on two cores.
BORROWED_START_TOKENS = 32


class Decoder:
    """The replies one loaded text model is writing, decoded together on one thread."""

    def __init__(
        self,
        llama: Llama,
        formatter: Jinja2ChatFormatter,
        tokenizer: Tokenizer,
        parallel: int,
        store: PromptStore,
        batches_sequences: bool = True,
    ) -> None:
        self._llama = llama
        self._batches_sequences = batches_sequences  # RuntimeConfig.batches_sequences
        self._formatter = formatter
        self._tokenizer = tokenizer
        self._store = store
        self._ctx = llama._ctx.ctx
        self._vocab = llama._model.vocab
        self._slots = [_Slot(seq_id) for seq_id in range(parallel)]
        self._n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self._ctx))
        self._n_batch = llama.n_batch
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._waiting: list[_Reply] = []
        self._writing_before: frozenset[int] = frozenset()  # the slots written in the last step
        self._steps_settled = 0  # steps since they changed or a reply waited
        self._forget_due = False
        self._closed = False
        self._lock = threading.Lock()  # the waiting replies, the thread, the flags
        self._thread: threading.Thread | None = None  # runs while there is work (_run)

    # --- From the runner's request threads ------------------------------------------------

    def generate(
        self, request: GenerateRequest, emit: Callable[[str], None], cancelled
    ) -> tuple[int, int, int]:
        """Write the reply, calling ``emit`` with each piece of text; answers (prompt tokens,
        completion tokens, prompt tokens found in the slot). Blocks until it ends."""
        reply = _Reply(request, self._prompt(request), emit, cancelled)
        with self._lock:
            if self._closed:
                raise RuntimeError("the model was unloaded")
            self._waiting.append(reply)
            self._work_arrived()
        reply.done.wait()
        if reply.error is not None:
            raise reply.error
        return reply.counts()

    def _prompt(self, request: GenerateRequest) -> list[int]:
        formatted = self._formatter(messages=request.messages)
        key = request.prompt_cache_key
        prompt = self._tokenizer.prompt(
            formatted.prompt,
            add_bos=not formatted.added_special,
            conversation="" if not key or self._store.is_forgotten(key) else key,
        )
        if len(prompt) >= self._n_ctx_seq:
            # ValueError: the runner's word for "does not fit the context" (ERROR_CONTEXT).
            raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {self._n_ctx_seq}")
        return prompt

    def forget(self) -> None:
        """Some conversations were forgotten (``PromptStore.is_forgotten``): empty their slots
        as soon as no reply is being written in them."""
        with self._lock:
            self._forget_due = True
            self._work_arrived()

    @property
    def parallel(self) -> int:
        return len(self._slots)

    def conversations_held(self) -> int:
        """Conversations whose tokens are in a slot (read without the decoder's lock: a
        figure for a summary)."""
        return sum(bool(s.owner) and not self._store.is_forgotten(s.owner) for s in self._slots)

    def close(self) -> None:
        """Stop the decoder; replies still waiting or being written fail."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join()
        self._fail_all(RuntimeError("the model was unloaded"))
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for reply in waiting:
            reply.error = RuntimeError("the model was unloaded")
            reply.done.set()
        llama_cpp.llama_batch_free(self._batch)

    def _work_arrived(self) -> None:
        """Start the decoder's thread unless it runs (it takes the work between steps); call
        with the lock held."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="runner-decoder", daemon=True)
            self._thread.start()

    # --- On the decoder's thread ----------------------------------------------------------

    def _run(self) -> None:
        # The thread ends as soon as nothing is left to do, and the OpenMP threads llama.cpp
        # started for it go with it. Left waiting, they would count against the CPUs while
        # another thread computes (another model's, a model being loaded): with more OpenMP
        # threads than CPUs, libgomp sleeps in the kernel at every wait of every step, and a
        # reply is written several times slower.
        while True:
            with self._lock:
                if self._closed or not (self._waiting or self._forget_due or self._writing()):
                    self._thread = None
                    return
                admitted = self._admit()
                waited = bool(admitted or self._waiting)
                forget_due, self._forget_due = self._forget_due, False
            try:
                seating = {slot.seq_id for slot, _ in admitted}
                for slot, reply in admitted:
                    self._seat(slot, reply, seating)
                if forget_due:
                    self._empty_forgotten()
                if self._batches_sequences:
                    self._move_together_once_settled(waited)
                if self._writing():
                    self._step()
            except Exception as exc:  # noqa: BLE001 - every reply in the batch hears of it
                self._fail_all(exc)

    def _writing(self) -> bool:
        return any(slot.reply is not None for slot in self._slots)

    def _writing_ids(self) -> frozenset[int]:
        return frozenset(slot.seq_id for slot in self._slots if slot.reply is not None)

    def writing_runs(self) -> int:
        """Groups of neighbouring slots the replies being written are in: llama.cpp's passes a
        step (read without the decoder's lock: a figure for a summary)."""
        return _runs(self._writing_ids())

    def _move_together_once_settled(self, waited: bool) -> None:
        writing = self._writing_ids()
        if waited or writing != self._writing_before:
            self._writing_before, self._steps_settled = writing, 0
            return
        self._steps_settled += 1
        if self._steps_settled < SETTLED_STEPS or _runs(writing) <= 1:
            return
        # The row of as many slots holding the most of them; the others move into its gaps.
        width = len(writing)
        rows = [range(at, at + width) for at in range(len(self._slots) - width + 1)]
        row = max(rows, key=lambda r: len(writing.intersection(r)))
        gaps = [self._slots[i] for i in row if i not in writing]
        movers = [self._slots[i] for i in sorted(writing) if i not in row]
        for source, target in zip(movers, gaps, strict=True):
            self._move(source, target)
        self._writing_before = self._writing_ids()

    def _move(self, source: _Slot, target: _Slot) -> None:
        """Move ``source``'s reply and tokens to ``target``, whose conversation goes to the
        store first. llama.cpp copies the stream at the next decode, before it writes any."""
        self._vacate(target)
        llama_cpp.llama_memory_seq_cp(self._memory(), source.seq_id, target.seq_id, -1, -1)
        target.tokens, target.owner, target.reply = source.tokens, source.owner, source.reply
        self._clear(source)
        source.owner, source.reply = "", None

    def _admit(self) -> list[tuple[_Slot, _Reply]]:
        """Waiting replies given the free slots, fairly between people; call with the lock held."""
        free = [slot for slot in self._slots if slot.reply is None]
        writing: dict[str, int] = {}
        for slot in self._slots:
            if slot.reply is not None:
                writing[slot.reply.person] = writing.get(slot.reply.person, 0) + 1
        admitted: list[tuple[_Slot, _Reply]] = []
        while free and self._waiting:
            # The earliest waiting reply of someone with the fewest replies being written.
            reply = min(self._waiting, key=lambda r: writing.get(r.person, 0))
            self._waiting.remove(reply)
            writing[reply.person] = writing.get(reply.person, 0) + 1
            slot = self._slot_for(reply, free)
            free.remove(slot)
            slot.reply = reply  # taken now, seated (its KV cache prepared) outside the lock
            admitted.append((slot, reply))
        return admitted

    def _slot_for(self, reply: _Reply, free: list[_Slot]) -> _Slot:
        for slot in free:
            if reply.cache_key and slot.owner == reply.cache_key:
                return slot

        def preference(slot: _Slot) -> tuple[bool, int, float]:
            shared = _common_prefix(slot.tokens, reply.prompt) if self._same_person(slot, reply) else 0
            # Copying a long conversation out costs more than reading a shared start again
            # (a system prompt): an empty slot comes first, unless the prompt continues what
            # the slot holds.
            continues = shared * 2 >= len(slot.tokens) > 0
            return (bool(slot.owner) and not continues, -shared, slot.last_used)

        return min(free, key=preference)

    @staticmethod
    def _same_person(slot: _Slot, reply: _Reply) -> bool:
        return bool(slot.owner and reply.cache_key) and person_of(slot.owner) == reply.person

    def _seat(self, slot: _Slot, reply: _Reply, seating: set[int]) -> None:
        """Prepare ``slot``'s KV cache for ``reply``: its own conversation's tokens, or a
        start shared with the same person's, or nothing. ``seating``: the slots being
        prepared in this round, whose caches are about to change."""
        if slot.owner != reply.cache_key or not reply.cache_key:
            incoming = self._store.prompt_take(reply.cache_key) if reply.cache_key else None
            self._vacate(slot)
            if incoming is not None:
                self._state_load(slot, incoming)
            elif not self._same_person(slot, reply):
                self._clear(slot)
            slot.owner = reply.cache_key
            if incoming is None:
                self._borrow_start(slot, reply, seating)
        # At least the prompt's last token is evaluated: its logits give the first token.
        reused = min(_common_prefix(slot.tokens, reply.prompt), len(reply.prompt) - 1)
        llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq_id, reused, -1)
        del slot.tokens[reused:]
        reply.cached_tokens = reused
        reply.pending = reply.prompt[reused:]
        if reply.max_tokens <= 0:
            reply.max_tokens = self._n_ctx_seq
        if reply.cache_key and self._store.is_forgotten(reply.cache_key):
            reply.cache_key = ""  # deleted before it started: its tokens go when it ends

    def _borrow_start(self, slot: _Slot, reply: _Reply, seating: set[int]) -> None:
        """Copy in the longest start of ``reply``'s prompt that another slot holds for the same
        person (a persona's system prompt, the same question in a new conversation), where
        it is ``BORROWED_START_TOKENS`` longer than what ``slot`` holds."""
        lenders = [s for s in self._slots if s.seq_id not in seating and self._same_person(s, reply)]
        if not lenders:
            return
        lender = max(lenders, key=lambda s: _common_prefix(s.tokens, reply.prompt))
        shared = min(_common_prefix(lender.tokens, reply.prompt), len(reply.prompt) - 1)
        if shared < _common_prefix(slot.tokens, reply.prompt) + BORROWED_START_TOKENS:
            return
        # llama.cpp copies a sequence only whole between streams, at the next decode: the
        # lender's cells are left as they are until then, this slot's beyond the start dropped.
        llama_cpp.llama_memory_seq_cp(self._memory(), lender.seq_id, slot.seq_id, -1, -1)
        llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq_id, shared, -1)
        slot.tokens = lender.tokens[:shared]

    def _vacate(self, slot: _Slot) -> None:
        """Copy the slot's conversation out to the store, where memory allows."""
        if not slot.owner or not slot.tokens or self._store.is_forgotten(slot.owner):
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot.seq_id)
        if size + len(slot.tokens) * ctypes.sizeof(ctypes.c_int32) > self._store.prompt_room():
            return
        # numpy's buffer is not zeroed first, as a ctypes array is, and asks for huge pages:
        # 2,400 tokens of the bundled model (52 MB) copy out in 177 ms instead of 220.
        kv = np.empty(size, dtype=np.uint8)
        written = llama_cpp.llama_state_seq_get_data(self._ctx, _bytes_at(kv), size, slot.seq_id)
        self._store.prompt_keep(slot.owner, PromptState(tokens=list(slot.tokens), kv=kv, kv_bytes=written))

    def _state_load(self, slot: _Slot, state: PromptState) -> None:
        self._clear(slot)
        if (
            llama_cpp.llama_state_seq_set_data(self._ctx, _bytes_at(state.kv), state.kv_bytes, slot.seq_id)
            == state.kv_bytes
        ):
            slot.tokens = list(state.tokens)
        else:
            self._clear(slot)  # evaluated again from the start

    def _clear(self, slot: _Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq_id, 0, -1)
        slot.tokens = []

    def _memory(self):
        return llama_cpp.llama_get_memory(self._ctx)

    def _empty_forgotten(self) -> None:
        for slot in self._slots:
            if slot.reply is None and slot.owner and self._store.is_forgotten(slot.owner):
                self._clear(slot)
                slot.owner = ""

    def _step(self) -> None:
        """Every writing reply's next token, then prompt pieces while room is left: in one
        batch, or one call per sequence where the weights fault on several at once."""
        work = [(s, [s.reply.next_token]) for s in self._slots if s.reply and s.reply.next_token is not None]
        # While replies are being written, a long prompt is read a little at each step, so
        # that their text keeps coming instead of stopping for seconds.
        room = min(self._n_batch - len(work), PROMPT_PIECE_WHILE_WRITING) if work else self._n_batch
        for slot in self._slots:
            if room <= 0:
                break
            if slot.reply is not None and slot.reply.pending:
                work.append((slot, slot.reply.pending[:room]))
                room -= len(work[-1][1])
        if self._batches_sequences:
            self._evaluate(work)
        else:
            for slot, piece in work:
                self._evaluate([(slot, piece)])
                # A few more of its tokens in a row: llama.cpp reuses its graph for the same
                # sequence, and switching every token costs about a fifth of the speed.
                for _ in range(RUN_PER_CALL_REPLY - 1):
                    reply = slot.reply
                    if reply is None or reply.next_token is None or reply.cancelled():
                        break
                    self._evaluate([(slot, [reply.next_token])])
        for slot in self._slots:
            if slot.reply is not None and slot.reply.cancelled():
                self._finish(slot)

    def _evaluate(self, pieces: list[tuple[_Slot, list[int]]]) -> None:
        """One llama_decode of each slot's piece (its reply's next token, or some of its
        prompt), then a token sampled for each reply whose prompt is all read."""
        self._batch.n_tokens = 0
        sample_at: list[tuple[_Slot, int]] = []  # which batch row's logits each reply samples
        for slot, tokens in pieces:
            assert slot.reply is not None
            ends = slot.reply.next_token is not None or len(tokens) == len(slot.reply.pending)
            for i, token in enumerate(tokens):
                row = self._add(token, len(slot.tokens) + i, slot.seq_id, ends and i == len(tokens) - 1)
            if ends:
                sample_at.append((slot, row))
        returned = llama_cpp.llama_decode(self._ctx, self._batch)
        if returned != 0:
            raise RuntimeError(f"llama_decode returned {returned}")
        for slot, tokens in pieces:
            assert slot.reply is not None
            slot.tokens.extend(tokens)
            if slot.reply.next_token is not None:
                slot.reply.next_token = None
            else:
                del slot.reply.pending[: len(tokens)]
        for slot, row in sample_at:
            reply = slot.reply
            assert reply is not None
            token = reply.sampler.sample(self._llama._ctx, row)
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                self._finish(slot)
                continue
            reply.completion_tokens += 1
            stopped = reply.take(self._llama.detokenize([token]))
            full = reply.completion_tokens >= reply.max_tokens or len(slot.tokens) + 1 >= self._n_ctx_seq
            if stopped or full:
                self._finish(slot)
            else:
                reply.next_token = token

    def _add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        batch = self._batch
        row = int(batch.n_tokens)
        batch.token[row] = token
        batch.pos[row] = pos
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = seq_id
        batch.logits[row] = logits
        batch.n_tokens = row + 1
        return row

    def _finish(self, slot: _Slot) -> None:
        reply = slot.reply
        assert reply is not None
        reply.flush()
        reply.sampler.close()
        slot.reply = None
        slot.last_used = time.monotonic()
        if not reply.cache_key or self._store.is_forgotten(reply.cache_key):
            self._clear(slot)  # nothing kept of a conversation that keeps nothing, or was deleted
            slot.owner = ""
        reply.done.set()

    def _fail_all(self, exc: BaseException) -> None:
        for slot in self._slots:
            reply = slot.reply
            if reply is None:
                continue
            reply.error = exc
            reply.sampler.close()
            slot.reply = None
            self._clear(slot)
            slot.owner = ""
            reply.done.set()

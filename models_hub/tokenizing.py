"""A loaded model's tokenizer, not asked twice about the same history.

llama.cpp's tokenizer reads about 0.7 MB of text a second on two cores: a conversation of
2,400 tokens took 20 ms to count before each turn and 20 ms more to tokenize as a prompt,
a fifth of the turn's wait for its first token. Each turn's history is the last turn's with a
little more, so a count is remembered per text, and a conversation's prompt per conversation
as the tokens up to its last special token (a turn's start, ``<|im_start|>``): the next prompt
is tokenized only past it, when it starts with the same text.

Cutting there gives the tokens the whole prompt would: llama.cpp splits a prompt at its
special tokens before anything else and tokenizes each piece of text between them on its own.
A special token that eats the spaces after it (``rstrip``) is not cut after.

No text is kept: a count and a prompt's start are found by a digest of the text, keyed with a
secret of this process. A conversation's tokens go when it is forgotten (``forget``).

Runs in the model runner only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import llama_cpp

if TYPE_CHECKING:
    from llama_cpp import Llama

COUNTS_KEPT = 4096  # texts whose counts are remembered, least recently used dropped first
PROMPTS_KEPT = 256  # conversations whose prompt starts are remembered

_SECRET = os.urandom(16)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), key=_SECRET, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class _PromptStart:
    chars: int  # how much of the prompt's text ``tokens`` are
    digest: bytes  # of that text
    tokens: list[int]
    add_bos: bool


class Tokenizer:
    def __init__(self, llama: Llama) -> None:
        self._llama = llama
        self._vocab = llama._model.vocab
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._starts: OrderedDict[str, _PromptStart] = OrderedDict()
        self._cuttable: dict[int, str] = {}  # special token → its text, "" where not cut after
        self._lock = threading.Lock()  # the memories above; called from request threads

    def count(self, text: str) -> int:
        """Tokens ``text`` takes as plain text (no special tokens read in it)."""
        key = _digest(text)
        with self._lock:
            if (known := self._counts.get(key)) is not None:
                self._counts.move_to_end(key)
                return known
        counted = len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        with self._lock:
            self._counts[key] = counted
            while len(self._counts) > COUNTS_KEPT:
                self._counts.popitem(last=False)
        return counted

    def prompt(self, text: str, *, add_bos: bool, conversation: str = "") -> list[int]:
        """The tokens of a formatted prompt (special tokens read), tokenizing only what is
        new since ``conversation``'s last prompt; "" remembers nothing."""
        with self._lock:
            start = self._starts.get(conversation) if conversation else None
        if (
            start is not None
            and start.add_bos == add_bos
            and len(text) >= start.chars
            and _digest(text[: start.chars]) == start.digest
        ):
            tokens = start.tokens + self._tokenize(text[start.chars :], add_bos=False)
        else:
            tokens = self._tokenize(text, add_bos=add_bos)
        if conversation:
            self._remember(conversation, text, tokens, add_bos)
        return tokens

    def forget(self, conversations: list[str]) -> None:
        with self._lock:
            for conversation in conversations:
                self._starts.pop(conversation, None)

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True) if text else []

    def _remember(self, conversation: str, text: str, tokens: list[int], add_bos: bool) -> None:
        for index in range(len(tokens) - 1, -1, -1):
            piece = self._cut_after(tokens[index])
            if piece and (found := text.rfind(piece)) >= 0:
                chars = found + len(piece)
                start = _PromptStart(chars, _digest(text[:chars]), tokens[: index + 1], add_bos)
                with self._lock:
                    self._starts[conversation] = start
                    self._starts.move_to_end(conversation)
                    while len(self._starts) > PROMPTS_KEPT:
                        self._starts.popitem(last=False)
                return

    def _cut_after(self, token: int) -> str:
        """The text of ``token`` if a prompt may be cut after it, else ""."""
        if (known := self._cuttable.get(token)) is not None:
            return known
        attrs = llama_cpp.llama_vocab_get_attr(self._vocab, token)
        special = attrs & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED)
        piece = ""
        if special and not attrs & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP:
            piece = self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")
        self._cuttable[token] = piece
        return piece

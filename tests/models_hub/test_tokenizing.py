"""The runner's tokenizer memory, with the bundled model's real tokenizer and chat template."""

from __future__ import annotations

import pytest

from models_hub.bundled import bundled_model_path
from models_hub.runner_protocol import LoadSpec


@pytest.fixture(scope="module")
def llama():
    from llama_cpp import Llama

    model = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
    yield model
    model.close()


@pytest.fixture
def tokenized(llama, monkeypatch):
    """The texts the tokenizer hands llama.cpp, as they are asked."""
    asked: list[bytes] = []
    tokenize = llama.tokenize

    def recording(text: bytes, *args, **kwargs):
        asked.append(text)
        return tokenize(text, *args, **kwargs)

    monkeypatch.setattr(llama, "tokenize", recording)
    return asked


def formatted(llama, messages: list[dict]) -> str:
    from models_hub.runner import chat_formatter

    spec = LoadSpec(
        slug="smol",
        path=llama.model_path,
        n_ctx=512,
        n_threads=1,
        n_gpu_layers=0,
        chat_template="",
        memory_bytes=0,
    )
    return chat_formatter(llama, spec)(messages=messages).prompt


def whole(llama, text: str) -> list[int]:
    return llama.tokenize(text.encode(), add_bos=False, special=True)


HISTORY = [
    ("Tell me about the tides.", "Tides rise and fall twice a day,  pulled by the Moon. \n\nSpring tides…"),
    ("Why twice?", "The Earth's far side is pulled less than its centre: two bulges, ünïcödé 🌊 and all."),
    ("And neap tides?", "   When the Sun and Moon pull at right angles.\n"),
]


def conversation(turns: int) -> list[dict]:
    """The prompt of turn ``turns`` + 1: that many exchanges, then a question."""
    messages = [{"role": "system", "content": "You are a careful teacher."}]
    for question, answer in HISTORY[:turns]:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    questions = [question for question, _ in HISTORY] + ["Say more."]
    return [*messages, {"role": "user", "content": questions[turns]}]


def test_each_turn_gives_the_tokens_of_the_whole_prompt_and_reads_only_what_is_new(llama, tokenized):
    from models_hub.tokenizing import Tokenizer

    tokenizer = Tokenizer(llama)
    for turns in range(len(HISTORY) + 1):
        text = formatted(llama, conversation(turns))
        tokenized.clear()
        tokens = tokenizer.prompt(text, add_bos=False, conversation="ann.1")
        [read] = tokenized
        assert tokens == whole(llama, text)
        if turns:
            # The last turn's prompt was not read again: only its reply and the new question.
            assert len(read) < len(HISTORY[turns - 1][1].encode()) + 100 < len(text.encode())


def test_a_changed_history_another_conversation_or_none_is_read_whole(llama, tokenized):
    from models_hub.tokenizing import Tokenizer

    tokenizer = Tokenizer(llama)
    first = formatted(llama, conversation(2))
    tokenizer.prompt(first, add_bos=False, conversation="ann.1")
    edited = formatted(
        llama, [{**m, "content": m["content"].replace("tides", "waves")} for m in conversation(2)]
    )
    for text, key in ((edited, "ann.1"), (first, "ann.2"), (first, "")):
        tokenized.clear()
        tokens = tokenizer.prompt(text, add_bos=False, conversation=key)
        assert tokenized == [text.encode()]
        assert tokens == whole(llama, text)


def test_a_forgotten_conversation_is_read_whole_again(llama, tokenized):
    from models_hub.tokenizing import Tokenizer

    tokenizer = Tokenizer(llama)
    tokenizer.prompt(formatted(llama, conversation(1)), add_bos=False, conversation="ann.1")
    tokenizer.forget(["ann.1"])
    text = formatted(llama, conversation(2))
    tokenized.clear()
    tokens = tokenizer.prompt(text, add_bos=False, conversation="ann.1")
    assert tokenized == [text.encode()]
    assert tokens == whole(llama, text)


def test_counts_are_the_models_and_a_text_is_counted_once(llama, tokenized):
    from models_hub.tokenizing import Tokenizer

    tokenizer = Tokenizer(llama)
    texts = [answer for _, answer in HISTORY]
    counts = [tokenizer.count(text) for text in texts]
    assert counts == [len(llama.tokenize(t.encode(), add_bos=False, special=False)) for t in texts]
    tokenized.clear()
    assert [tokenizer.count(text) for text in texts] == counts
    assert tokenized == []

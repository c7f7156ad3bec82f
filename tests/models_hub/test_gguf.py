"""The GGUF header reader, on the real bundled file and on files that are not models."""

import struct

import pytest

from models_hub.bundled import bundled_model_path
from models_hub.gguf import GGUFError, gguf_read


def test_the_bundled_models_header_says_what_it_is():
    info = gguf_read(bundled_model_path())
    assert info.architecture == "llama" and info.context_length == 8192
    assert info.quantization == "Q4_1" and 134_000_000 < info.parameter_count < 135_000_000
    assert "<|im_start|>" in info.chat_template
    # 30 layers × 3 KV heads × (64 + 64) × 2 bytes (SmolLM2-135M's configuration).
    assert info.kv_bytes_per_token == 30 * 3 * 128 * 2


def test_a_file_that_is_not_gguf_is_refused_with_what_it_starts_with(tmp_path):
    page = tmp_path / "model.gguf"
    page.write_text("<html>Not found</html>")
    with pytest.raises(GGUFError, match=r"not a GGUF model file \(it starts with b'<htm'"):
        gguf_read(page)


def test_a_truncated_header_is_refused(tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(bundled_model_path().read_bytes()[:100_000])
    with pytest.raises(GGUFError, match="truncated"):
        gguf_read(cut)


def test_a_missing_file_is_refused_clearly(tmp_path):
    with pytest.raises(GGUFError, match="cannot be read"):
        gguf_read(tmp_path / "nothing.gguf")


def test_lists_nested_without_end_are_refused_not_recursed_into(tmp_path):
    # One metadata entry: an array of arrays of arrays … ten thousand deep (a hostile file).
    key = b"general.nested"
    entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)
    entry += struct.pack("<IQ", 9, 1) * 10_000
    path = tmp_path / "nested.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + entry)
    with pytest.raises(GGUFError, match="nests lists too deeply"):
        gguf_read(path)

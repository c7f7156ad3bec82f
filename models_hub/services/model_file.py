"""A model's file as the hub keeps it: where it lives, and what its GGUF header gives the
model's row."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from models_hub.gguf import GGUFInfo
from models_hub.models import LocalModel


def model_folder(model: LocalModel) -> Path:
    """Where the hub keeps a downloaded model's file (and its ``.partial`` on the way)."""
    return settings.MODELS_DIR / model.slug


def partial_path(model: LocalModel) -> Path:
    return model_folder(model) / (Path(model.hf_file).name + ".partial")


def projector_partial_path(model: LocalModel) -> Path:
    """A vision model's projector on its way, in the model's folder: deleted with it."""
    return model_folder(model) / (Path(model.hf_projector_file).name + ".partial")


def header_fields(info: GGUFInfo) -> dict:
    return {
        "architecture": info.architecture,
        "parameter_count": info.parameter_count,
        "quantization": info.quantization,
        "context_length": info.context_length or 2048,
        "kv_bytes_per_token": info.kv_bytes_per_token,
        "chat_template": info.chat_template,
    }

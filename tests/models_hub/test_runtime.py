"""The loaded-model cache with the real llama.cpp: LRU under a memory budget, idle unload."""

from __future__ import annotations

import shutil
import time

import pytest

from models_hub import runtime
from models_hub.bundled import bundled_model_path
from models_hub.runtime import LoadSpec, ModelMemoryError, model_in_use

MIB = 1024 * 1024


@pytest.fixture
def two_files(tmp_path):
    second = tmp_path / "second.gguf"
    shutil.copyfile(bundled_model_path(), second)
    return str(bundled_model_path()), str(second)


@pytest.fixture(autouse=True)
def _nothing_loaded():
    runtime._unload_all()
    yield
    runtime._unload_all()


def spec(path: str, slug: str, memory_mb: int = 200) -> LoadSpec:
    return LoadSpec(
        slug=slug,
        path=path,
        n_ctx=512,
        n_threads=1,
        n_gpu_layers=0,
        chat_template="",
        memory_bytes=memory_mb * MIB,
    )


def loaded_slugs() -> list[str]:
    return [m["slug"] for m in runtime.loaded_summary()]


def test_two_models_stay_loaded_while_they_fit(two_files, settings):
    settings.LOCAL_MODEL_MEMORY_MB = 500
    first, second = two_files
    with model_in_use(spec(first, "a")):
        pass
    with model_in_use(spec(second, "b")):
        pass
    assert loaded_slugs() == ["a", "b"]


def test_the_least_recently_used_model_makes_room(two_files, settings):
    settings.LOCAL_MODEL_MEMORY_MB = 300
    first, second = two_files
    with model_in_use(spec(first, "a")) as llama:
        assert llama.tokenize(b"hello")
    with model_in_use(spec(second, "b")):
        assert loaded_slugs() == ["b"]


def test_a_model_in_use_is_never_unloaded(two_files, settings):
    settings.LOCAL_MODEL_MEMORY_MB = 300
    first, second = two_files
    with model_in_use(spec(first, "a"), exclusive=False):
        with pytest.raises(ModelMemoryError, match="in use"), model_in_use(spec(second, "b")):
            pass
        assert loaded_slugs() == ["a"]
        assert runtime.loaded_summary()[0]["in_use"]


def test_a_model_larger_than_the_budget_is_refused_with_the_numbers(two_files, settings):
    settings.LOCAL_MODEL_MEMORY_MB = 100
    needs = r"needs about 200\.0\sMB.*may use 100\.0\sMB"
    with pytest.raises(ModelMemoryError, match=needs), model_in_use(spec(two_files[0], "a")):
        pass
    assert loaded_slugs() == []


def test_idle_models_and_deleted_files_are_unloaded(two_files, settings, tmp_path):
    settings.LOCAL_MODEL_MEMORY_MB = 500
    settings.LOCAL_MODEL_IDLE_UNLOAD_S = 60
    first, second = two_files
    with model_in_use(spec(first, "a")):
        pass
    with model_in_use(spec(second, "b")):
        pass
    assert runtime.unload_idle() == 0
    (tmp_path / "second.gguf").unlink()
    assert runtime.unload_idle() == 1 and loaded_slugs() == ["a"]
    assert runtime.unload_idle(now=time.monotonic() + 61) == 1 and loaded_slugs() == []


def test_new_settings_replace_the_loaded_copy(two_files, settings):
    settings.LOCAL_MODEL_MEMORY_MB = 1000
    first = two_files[0]
    with model_in_use(spec(first, "a")):
        pass
    bigger = LoadSpec(
        **{
            "slug": "a",
            "path": first,
            "n_ctx": 1024,
            "n_threads": 1,
            "n_gpu_layers": 0,
            "chat_template": "",
            "memory_bytes": 200 * MIB,
        }
    )
    with model_in_use(bigger) as llama:
        assert llama.n_ctx() == 1024
    assert [m["n_ctx"] for m in runtime.loaded_summary()] == [1024]

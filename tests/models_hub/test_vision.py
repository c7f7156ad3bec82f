"""Local vision models: a catalog model and its image projector downloaded as one model from a
real hub on loopback, and the real model runner turning an image into tokens through
llama.cpp's multimodal path (the bundled model with a tiny random projector: tiny_projector.py).
"""

from __future__ import annotations

import base64
import io
import shutil
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from channels.db import database_sync_to_async
from PIL import Image

from chat.providers import model_resolve
from models_hub import probe, services
from models_hub.bundled import bundled_model_path
from models_hub.catalog import CATALOG, catalog_entry
from models_hub.machine import memory_needed
from models_hub.models import LocalModelStatus
from models_hub.runner_protocol import (
    ERROR_FAILED,
    GenerateRequest,
    Limits,
    LoadSpec,
    RuntimeConfig,
    config_candidates,
)
from models_hub.runtime import load_spec_for
from models_hub.supervisor import RunnerError, supervisor
from tests.chat.socket_client import session_cookie_for

from .conftest import files_in, settled
from .test_hub_page import hub_socket
from .tiny_projector import IMAGE_TOKENS, PARTS_TEMPLATE, tiny_projector_write

pytestmark = pytest.mark.django_db(transaction=True)

SLUG = "smolvlm-256m-instruct"
ENTRY = catalog_entry(SLUG)
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def projector(tmp_path_factory):
    return tiny_projector_write(tmp_path_factory.mktemp("projector") / "mmproj-tiny.gguf")


@pytest.fixture
def vision_hub(hub, hub_root, projector):
    """The hub serving SmolVLM 256M's repository: the bundled model as its GGUF, and the tiny
    projector as its mmproj."""
    hub.add(ENTRY.repo, ENTRY.file, hub_root / "smollm2-135m-instruct-q4_1.gguf")
    hub.add(ENTRY.repo, ENTRY.projector, projector)
    return hub


def install(admin):
    return settled(services.model_install(slug=SLUG, requested_by=admin))


# --- The catalog and the download -----------------------------------------------------


def test_the_catalog_names_a_projector_for_each_small_vision_model():
    seeing = {entry.slug: entry for entry in CATALOG if entry.sees_images}
    assert set(seeing) == {
        "smolvlm-256m-instruct",
        "smolvlm-500m-instruct",
        "qwen2-5-vl-3b-instruct",
        "gemma-3-4b-it",
    }
    for entry in seeing.values():
        assert entry.repo.startswith("ggml-org/") and entry.projector.startswith("mmproj-")
        assert entry.download_bytes == entry.size_bytes + entry.projector_size_bytes > entry.size_bytes


def test_a_vision_model_and_its_projector_download_as_one_model_that_sees_images(vision_hub, admin, settings):
    model = install(admin)

    assert model.status == LocalModelStatus.READY, model.error
    served, projector = (
        vision_hub.files[(ENTRY.repo, ENTRY.file)],
        vision_hub.files[(ENTRY.repo, ENTRY.projector)],
    )
    assert files_in(settings.MODELS_DIR) == sorted([ENTRY.file, ENTRY.projector])
    assert (model.sha256, model.projector_sha256) == (served.sha256, projector.sha256)
    # One download: its size and progress are those of both files.
    assert model.size_bytes == model.downloaded_bytes == served.size + projector.size
    assert model.projector_size_bytes == projector.size
    assert model.projector_path == str(settings.MODELS_DIR / SLUG / ENTRY.projector)
    assert model.sees_images and model_resolve(model.model_id).sees_images
    # Its memory estimate holds the projector too.
    assert load_spec_for(model).memory_bytes == memory_needed(
        size_bytes=served.size + projector.size, kv_bytes_per_token=model.kv_bytes_per_token,
        n_ctx=load_spec_for(model).n_ctx,
    )  # fmt: skip
    assert vision_hub.ranges_asked() == [None, None]

    services.model_delete(model=model)
    assert files_in(settings.MODELS_DIR) == [], "both files went with the model"


@pytest.mark.asyncio
async def test_the_download_bar_runs_once_over_both_files(vision_hub, admin):
    watcher = hub_socket(await database_sync_to_async(session_cookie_for)(admin))
    connected, _ = await watcher.connect()
    assert connected
    model = await database_sync_to_async(services.model_install)(slug=SLUG, requested_by=admin)
    events: list[dict] = []
    while not events or events[-1]["status"] not in ("ready", "failed"):
        event = await watcher.receive_json_from(timeout=60)
        if event["slug"] == model.slug:
            events.append(event)
    await watcher.disconnect()

    assert events[-1]["status"] == "ready", events[-1]["error"]
    model_size = vision_hub.files[(ENTRY.repo, ENTRY.file)].size
    total = model_size + vision_hub.files[(ENTRY.repo, ENTRY.projector)].size
    moving = [e for e in events if e["status"] == "downloading" and e["downloaded_bytes"]]
    done = [e["downloaded_bytes"] for e in moving]
    assert done == sorted(done) and model_size in done and done[-1] == total, "one bar, never going back"
    assert {e["size_bytes"] for e in moving} == {total}


def test_a_missing_projector_fails_the_model_and_a_resume_fetches_only_the_projector(
    hub, hub_root, projector, admin, settings
):
    hub.add(ENTRY.repo, ENTRY.file, hub_root / "smollm2-135m-instruct-q4_1.gguf")
    model = install(admin)
    assert model.status == LocalModelStatus.FAILED
    assert f"{ENTRY.repo}/{ENTRY.projector} was not found on the hub" in model.error
    assert model_resolve(model.model_id) is None, "no model without its projector"
    assert files_in(settings.MODELS_DIR) == [], "nothing fetched before both files were known"

    hub.add(ENTRY.repo, ENTRY.projector, projector)
    model = install(admin)  # the Install button again: a resume
    assert model.status == LocalModelStatus.READY, model.error
    assert model.sees_images


def test_a_damaged_projector_installs_neither_file(vision_hub, admin, settings, projector, tmp_path):
    damaged = tmp_path / "damaged.gguf"
    data = bytearray(projector.read_bytes())
    data[-100] ^= 0xFF  # in the weights
    damaged.write_bytes(bytes(data))
    vision_hub.add(
        ENTRY.repo, ENTRY.projector, damaged, sha256=vision_hub.files[(ENTRY.repo, ENTRY.projector)].sha256
    )

    model = install(admin)
    assert model.status == LocalModelStatus.FAILED
    assert "The downloaded projector file is damaged" in model.error
    assert model_resolve(model.model_id) is None
    # The model file waits, verified, for a resume; the damaged projector is gone.
    assert files_in(settings.MODELS_DIR) == [ENTRY.file + ".partial"]

    vision_hub.add(ENTRY.repo, ENTRY.projector, projector)
    model = install(admin)
    assert model.status == LocalModelStatus.READY, model.error
    assert vision_hub.ranges_asked()[-1] is None and len(vision_hub.ranges_asked()) == 3, (
        "the model not again"
    )


def test_a_projector_that_is_a_language_model_is_refused(hub, hub_root, admin, settings):
    hub.add(ENTRY.repo, ENTRY.file, hub_root / "smollm2-135m-instruct-q4_1.gguf")
    hub.add(ENTRY.repo, ENTRY.projector, hub_root / "smollm2-135m-instruct-q4_1.gguf")
    model = install(admin)
    assert model.status == LocalModelStatus.FAILED
    assert model.error.startswith("The projector file is not an image projector (it holds a llama model)")
    assert files_in(settings.MODELS_DIR) == [ENTRY.file + ".partial"]


# --- The runner -------------------------------------------------------------------------


@pytest.fixture
def fresh_runner():
    supervisor.stop()
    yield
    supervisor.stop()


def vision_spec(projector) -> LoadSpec:
    size = bundled_model_path().stat().st_size + projector.stat().st_size
    return LoadSpec(
        slug="tiny-vision", path=str(bundled_model_path()), n_ctx=1024, n_threads=1, n_gpu_layers=0,
        chat_template=PARTS_TEMPLATE, memory_bytes=size + 100 * MIB, projector_path=str(projector),
    )  # fmt: skip


def data_uri(colour: str = "red") -> str:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def reply(spec: LoadSpec, *parts: dict) -> tuple[str, int, int]:
    request = GenerateRequest(
        spec=spec,
        config=RuntimeConfig(use_extra_bufts=False),  # runs on every CPU; what the probe may pick: above
        limits=Limits(memory_budget=500 * MIB, idle_unload_s=0),
        messages=[{"role": "user", "content": [*parts, {"type": "text", "text": "What is in the picture?"}]}],
        max_tokens=8,
        temperature=0.0,
    )
    *texts, (prompt_tokens, completion_tokens, _) = supervisor.generate(request, cancelled=lambda: False)
    return "".join(texts), prompt_tokens, completion_tokens


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_a_vision_model_is_never_loaded_with_a_micro_batch_of_one(projector):
    # An image's tokens attend to each other: llama.cpp evaluates them in one micro-batch.
    spec = vision_spec(projector)
    assert all(config.n_ubatch > 1 for config in config_candidates(spec))
    assert probe.probe_key(spec) != probe.probe_key(replace(spec, projector_path=""))  # chosen apart


def test_an_image_reaches_the_model_as_image_tokens(fresh_runner, projector):
    spec = vision_spec(projector)
    _, text_only, _ = reply(spec)
    text, with_image, completion_tokens = reply(spec, image_part(data_uri()))
    # The words are nonsense (random weights); that they come, after the image's tokens, is the point.
    assert completion_tokens > 0 and text
    assert with_image - text_only >= IMAGE_TOKENS
    _, with_two, _ = reply(spec, image_part(data_uri("blue")), image_part(data_uri("green")))
    assert with_two - with_image >= IMAGE_TOKENS


class _Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805
                self.paths.append(handler.path)
                handler.send_response(404)
                handler.end_headers()

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.mark.parametrize("kind", ["url", "path"])
def test_an_image_that_is_not_a_data_uri_is_never_fetched(fresh_runner, projector, tmp_path, kind):
    server = _Recorder()
    picture = tmp_path / "picture.png"
    shutil.copyfile(bundled_model_path(), picture)  # any file; it must not be read
    url = f"http://127.0.0.1:{server.server_address[1]}/picture.png" if kind == "url" else str(picture)
    try:
        with pytest.raises(RunnerError) as failed:
            reply(vision_spec(projector), image_part(url))
    finally:
        server.shutdown()
        server.server_close()
    assert failed.value.kind == ERROR_FAILED and "data URI" in str(failed.value)
    assert server.paths == []


def test_a_projector_made_for_another_model_fails_the_load_with_a_reason(fresh_runner, tmp_path):
    wrong = tiny_projector_write(tmp_path / "mmproj-wider.gguf", text_width=960)  # SmolLM2-360M's width
    with pytest.raises(RunnerError) as failed:
        reply(vision_spec(wrong), image_part(data_uri()))
    assert failed.value.kind == ERROR_FAILED
    assert "The image projector cannot be used with this model" in str(failed.value)
    assert supervisor.current() is not None, "the runner lives on"

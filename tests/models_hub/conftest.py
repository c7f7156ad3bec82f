from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest

from models_hub.bundled import bundled_model_path
from models_hub.models import DOWNLOAD_ACTIVE, LocalModel
from tests.servers import HubServer
from tests.waiting import wait_until

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "smollm2-135m-instruct-q4_1.gguf"


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    """The test hub's own folder, holding a copy of the bundled GGUF to serve."""
    root = tmp_path_factory.mktemp("hub-files")
    shutil.copyfile(bundled_model_path(), root / FILE)
    return root


@pytest.fixture
def hub(settings, tmp_path, hub_root):
    """A loopback hub serving ``REPO/FILE``; the instance downloads from it into ``tmp_path``."""
    server = HubServer()
    server.add(REPO, FILE, hub_root / FILE)
    settings.HF_ENDPOINT = server.endpoint
    settings.MODELS_DIR = tmp_path / "models"
    settings.HUB_PROGRESS_INTERVAL_S = 0.05
    settings.HUB_RETRIES = 3
    settings.HUB_DISK_RESERVE_MB = 0
    yield server
    server.stop()


@pytest.fixture
def admin(make_user):
    return make_user("admin@example.com", is_staff=True, is_superuser=True)


def settled(model: LocalModel, timeout: float = 120) -> LocalModel:
    """The model once its download has finished, failed or been cancelled."""
    return wait_until(
        lambda: (m := fresh(model)).status not in DOWNLOAD_ACTIVE and m,
        timeout=timeout,
        what=f"{model.slug} to settle",
        every=0.02,
    )


def wait_until_unlocked(path: Path, timeout: float = 10) -> None:
    """Until no download task holds ``path`` (they lock the partial file they write)."""
    with open(path, "rb") as handle:

        def unlocked() -> bool:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return True

        wait_until(
            unlocked, timeout=timeout, what=f"no task to hold {path}", every=0.02, ignoring=(BlockingIOError,)
        )


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def fresh(model: LocalModel) -> LocalModel:
    model.refresh_from_db()
    return model

"""Downloads from a real hub on loopback (tests/servers.py: HubServer), real files on disk."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from chat.providers import model_resolve
from localai_site.core.refusals import Refusal
from models_hub import services
from models_hub.bundled import bundled_model_path
from models_hub.fetch import DownloadError, redirect_target, token_allowed
from models_hub.models import HubSettings, LocalModelStatus
from models_hub.selectors import local_models_ready
from tests.servers import HubServer, loopback_tls
from tests.waiting import wait_until

from .conftest import FILE, REPO, files_in, fresh, settled, wait_until_unlocked

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1000 * 1000


def add_and_download(admin, repo: str = REPO, file: str = FILE):
    """Add a model as the hub page does; its download runs as a task (in-process here)."""
    model = services.model_add_from_hub(repo=repo, file=file, requested_by=admin)
    return settled(model)


def resume(model, admin):
    services.model_download_start(model=model, requested_by=admin)
    return settled(model)


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_full_download_is_verified_and_becomes_usable(hub, admin, settings):
    model = add_and_download(admin)

    assert model.status == LocalModelStatus.READY, model.error
    served = hub.files[(REPO, FILE)]
    assert model.sha256 == served.sha256 == sha256_of(bundled_model_path())
    assert model.size_bytes == model.downloaded_bytes == served.size
    assert model.hf_revision == served.commit  # pinned for any later resume
    # What the GGUF header says.
    assert (model.architecture, model.context_length, model.quantization) == ("llama", 8192, "Q4_1")
    assert 130_000_000 < model.parameter_count < 140_000_000 and "im_start" in model.chat_template
    assert files_in(settings.MODELS_DIR) == [FILE]
    assert sha256_of(settings.MODELS_DIR / model.slug / FILE) == served.sha256
    assert model_resolve(model.model_id) is not None and model in local_models_ready()
    # Metadata from HEAD on the hub, bytes from storage on another host, in one request.
    assert [(r["method"], r["host"].split(":")[0]) for r in hub.requests] == [
        ("HEAD", "127.0.0.1"),
        ("GET", "127.0.0.1"),
        ("GET", "localhost"),
    ]
    assert hub.ranges_asked() == [None]


def test_a_dropped_connection_resumes_where_it_broke(hub, admin):
    hub.drop_at = [30 * MB]
    model = add_and_download(admin)
    assert model.status == LocalModelStatus.READY, model.error
    assert hub.ranges_asked() == [None, f"bytes={30 * MB}-"]
    assert model.sha256 == hub.files[(REPO, FILE)].sha256


def test_a_download_that_keeps_dropping_fails_and_resumes_later_from_its_partial_file(hub, admin, settings):
    settings.HUB_RETRIES = 0
    hub.drop_at = [20 * MB]
    model = add_and_download(admin)
    assert model.status == LocalModelStatus.FAILED and "kept dropping" in model.error
    assert model_resolve(model.model_id) is None
    assert files_in(settings.MODELS_DIR) == [FILE + ".partial"]

    # After a restart, say: the admin resumes; only the rest is fetched.
    model = resume(model, admin)
    assert model.status == LocalModelStatus.READY, model.error
    assert hub.ranges_asked() == [None, f"bytes={20 * MB}-"]
    assert files_in(settings.MODELS_DIR) == [FILE]
    assert sha256_of(settings.MODELS_DIR / model.slug / FILE) == model.sha256


def test_cancel_stops_the_download_and_resume_continues_it(hub, admin, settings):
    hub.rate = 20 * MB  # about five seconds for the whole file
    model = services.model_add_from_hub(repo=REPO, file=FILE, requested_by=admin)
    wait_until(lambda: fresh(model).downloaded_bytes > 5 * MB, timeout=60, what="some progress", every=0.02)

    assert services.model_download_cancel(model=model)
    partial = settings.MODELS_DIR / model.slug / (FILE + ".partial")
    wait_until_unlocked(partial)  # the task noticed and let go of the file
    model = fresh(model)
    assert model.status == LocalModelStatus.CANCELLED and model_resolve(model.model_id) is None
    kept = partial.stat().st_size
    assert 5 * MB < kept < model.size_bytes

    hub.rate = None
    model = resume(model, admin)
    assert model.status == LocalModelStatus.READY, model.error
    assert hub.ranges_asked()[-1] == f"bytes={kept}-", hub.requests
    assert sha256_of(settings.MODELS_DIR / model.slug / FILE) == model.sha256


def test_corrupted_bytes_fail_verification_and_leave_nothing_usable(hub, admin, settings, tmp_path):
    damaged = tmp_path / "damaged.gguf"
    shutil.copyfile(bundled_model_path(), damaged)
    with open(damaged, "r+b") as handle:  # one byte in the weights, far from the header
        handle.seek(50 * MB)
        byte = handle.read(1)
        handle.seek(50 * MB)
        handle.write(bytes([byte[0] ^ 0xFF]))
    hub.add("test-org/damaged", "model.gguf", damaged, sha256=hub.files[(REPO, FILE)].sha256)

    model = add_and_download(admin, "test-org/damaged", "model.gguf")
    assert model.status == LocalModelStatus.FAILED
    assert "damaged" in model.error and "deleted" in model.error
    assert files_in(settings.MODELS_DIR) == []
    assert model_resolve(model.model_id) is None and model not in local_models_ready()


def test_a_file_missing_on_the_hub_says_so(hub, admin, settings):
    model = add_and_download(admin, REPO, "no-such-file.gguf")
    assert model.status == LocalModelStatus.FAILED
    assert "not found on the hub (HTTP 404)" in model.error
    assert files_in(settings.MODELS_DIR) == []


def test_not_enough_disk_space_stops_before_any_byte_is_fetched(hub, admin, settings):
    free = shutil.disk_usage(settings.MODELS_DIR.parent).free
    settings.HUB_DISK_RESERVE_MB = free // (1024 * 1024)  # what is free minus less than the model
    model = add_and_download(admin)
    assert model.status == LocalModelStatus.FAILED
    assert model.error.startswith("Not enough disk space") and "HUB_DISK_RESERVE_MB" in model.error
    assert hub.ranges_asked() == [] and files_in(settings.MODELS_DIR) == []


def test_a_file_that_is_not_gguf_is_rejected(hub, admin, settings, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><p>Sign in to continue</p>" * 1000)
    hub.add("test-org/not-a-model", "model.gguf", page)
    model = add_and_download(admin, "test-org/not-a-model", "model.gguf")
    assert model.status == LocalModelStatus.FAILED
    assert model.error == "This is not a GGUF model file (it starts with b'<!DO', not b'GGUF')."
    assert files_in(settings.MODELS_DIR) == []


def test_a_gated_repository_needs_the_access_token_which_never_reaches_storage(hub, admin):
    hub.token = "hf_0123456789abcdefSECRET"
    model = add_and_download(admin)
    assert model.status == LocalModelStatus.FAILED
    assert "gated or private" in model.error and "access token" in model.error

    services.hub_token_set(token=hub.token)
    stored = HubSettings.objects.get()
    assert hub.token not in stored.access_token_encrypted and stored.access_token_hint == "…CRET"
    assert resume(model, admin).status == LocalModelStatus.READY
    sent = {(r["host"].split(":")[0], r["authorization"]) for r in hub.requests}
    assert ("127.0.0.1", f"Bearer {hub.token}") in sent
    assert all(auth is None for host, auth in sent if host == "localhost")


def test_the_token_never_follows_a_redirect_to_another_port_of_the_same_host(hub, admin, hub_root):
    storage = HubServer()  # 127.0.0.1 too, another port
    storage.add(REPO, FILE, hub_root / FILE)
    hub.storage = storage.endpoint
    hub.token = "hf_0123456789abcdefSECRET"
    services.hub_token_set(token=hub.token)
    try:
        assert add_and_download(admin).status == LocalModelStatus.READY
    finally:
        storage.stop()
    assert all(r["authorization"] == f"Bearer {hub.token}" for r in hub.requests)
    assert storage.ranges_asked() == [None]
    assert all(r["authorization"] is None for r in storage.requests)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://huggingface.co/org/repo/resolve/main/a.gguf", True),
        ("https://HuggingFace.co:443/org/repo/resolve/main/a.gguf", True),
        ("http://huggingface.co/org/repo/resolve/main/a.gguf", False),  # the token would cross in clear
        ("https://huggingface.co:8443/a.gguf", False),
        ("https://cdn-lfs.huggingface.co/a.gguf", False),
        ("https://huggingface.co.example.net/a.gguf", False),
        ("https://huggingface.co:port/a.gguf", False),
    ],
)
def test_the_token_goes_only_to_the_hubs_own_scheme_host_and_port(settings, url, allowed):
    settings.HF_ENDPOINT = "https://huggingface.co"
    assert token_allowed(url) is allowed


def test_a_redirect_from_https_to_http_is_refused_and_others_are_followed():
    with pytest.raises(DownloadError, match="from https to an unencrypted address"):
        redirect_target("https://huggingface.co/org/repo/resolve/main/a.gguf", "http://huggingface.co/a.gguf")
    assert redirect_target("https://huggingface.co/org/a", "/b?sig=1") == "https://huggingface.co/b?sig=1"
    assert redirect_target("http://127.0.0.1:8080/a", "http://localhost:9090/b") == "http://localhost:9090/b"


def test_a_redirect_from_https_to_http_fails_the_download_before_anything_goes_in_clear(
    hub, admin, settings, tmp_path, monkeypatch, hub_root
):
    context, certificate = loopback_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    secure = HubServer(tls=context)
    secure.add(REPO, FILE, hub_root / FILE)
    secure.storage = hub.endpoint  # its redirect leaves https for plain http
    secure.token = "hf_0123456789abcdefSECRET"
    settings.HF_ENDPOINT = secure.endpoint
    services.hub_token_set(token=secure.token)
    try:
        model = add_and_download(admin)
    finally:
        secure.stop()
    assert model.status == LocalModelStatus.FAILED and "from https to an unencrypted address" in model.error
    assert [r["method"] for r in secure.requests] == ["HEAD", "GET"]
    assert hub.requests == []  # nothing, the token least of all, went out unencrypted


def test_a_redirect_body_is_not_read(hub, admin, settings):
    settings.HUB_TIMEOUT_S = 5
    hub.redirect_body = 1 << 40  # announced; 64 KiB come, then nothing until the timeout
    model = add_and_download(admin)
    assert model.status == LocalModelStatus.READY, model.error


def test_a_mirror_without_metadata_headers_is_checked_through_the_tree_api(hub, admin):
    hub.metadata_headers = False
    model = add_and_download(admin)
    assert model.status == LocalModelStatus.READY, model.error
    assert model.sha256 == hub.files[(REPO, FILE)].sha256
    assert any(r["path"].startswith(f"/api/models/{REPO}/tree/") for r in hub.requests)


def test_a_catalog_model_downloads_from_its_repository(hub, admin, hub_root):
    hub.add("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", hub_root / FILE)
    model = services.model_install(slug="qwen2-5-0-5b-instruct", requested_by=admin)
    assert model.license == "apache-2.0" and model.hf_repo == "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    model = settled(model)
    assert model.status == LocalModelStatus.READY, model.error
    # What the file says wins over what the catalog expected.
    assert model.size_bytes == bundled_model_path().stat().st_size and model.quantization == "Q4_1"


def test_bad_repository_names_are_refused_and_nothing_is_added(admin):
    from models_hub.models import LocalModel

    for repo, file in [("no-slash", "a.gguf"), ("org/repo", "weights.bin"), ("org/repo", "../x.gguf")]:
        with pytest.raises(Refusal):
            services.model_add_from_hub(repo=repo, file=file, requested_by=admin)
    assert not LocalModel.objects.exists()


def test_a_finished_download_is_counted_only_for_an_admin_who_agreed_to_analytics(hub, admin, make_user):
    from accounts.models import ConsentPurpose, ConsentSource, UsageEvent
    from accounts.services import consent_set

    model = add_and_download(admin)
    assert model.status == LocalModelStatus.READY
    assert not UsageEvent.objects.exists()

    services.model_delete(model=model)
    consent_set(user=admin, purpose=ConsentPurpose.ANALYTICS, given=True, source=ConsentSource.SETTINGS)
    again = add_and_download(admin)
    event = UsageEvent.objects.get()
    assert (event.user, event.name, event.model) == (admin, "model_downloaded", again.slug)

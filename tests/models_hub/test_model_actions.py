"""What a model allows in each state: the hub's buttons, its services, its socket events and
the admin follow the one decision (``LocalModel.actions``)."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from localai_site.core.refusals import Refusal
from localai_site.core.sockets import CLOSE_CODES
from models_hub import runtime, services
from models_hub.bundled import bundled_model_path
from models_hub.events import model_event
from models_hub.models import HubSettings, LocalModel, LocalModelStatus, ModelSource
from tests.conftest import PASSWORD

from .conftest import FILE, REPO, fresh, settled

ADMIN_LIST = "/admin/models_hub/localmodel/"


@pytest.fixture
def admin_client(client, admin):
    client.login(email=admin.email, password=PASSWORD)
    return client


def flash(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def hub_model(slug: str, status: str, **extra) -> LocalModel:
    return LocalModel.objects.create(
        slug=slug,
        name=slug.title(),
        source=ModelSource.HUB,
        hf_repo=REPO,
        hf_file=FILE,
        status=status,
        **extra,
    )


def path_model(tmp_path, name: str = "Mine") -> LocalModel:
    copy = tmp_path / f"{name}.gguf"
    shutil.copyfile(bundled_model_path(), copy)
    return services.model_add_from_path(path=str(copy), name=name, requested_by=None)


def row_of(html: str, slug: str) -> str:
    start = html.index(f'data-slug="{slug}" data-status=')  # its card, not the probe's line
    return html[start : html.index("</li>", start)]


@pytest.mark.django_db
def test_each_state_allows_its_own_actions(local_model, tmp_path):
    assert local_model.actions == {"configure"}  # bundled and the default
    assert path_model(tmp_path).actions == {"configure", "make_default", "delete"}
    assert hub_model("queued", LocalModelStatus.QUEUED).actions == {"cancel"}
    assert hub_model("downloading", LocalModelStatus.DOWNLOADING).actions == {"cancel"}
    assert hub_model("verifying", LocalModelStatus.VERIFYING).actions == set()
    for status in (LocalModelStatus.FAILED, LocalModelStatus.CANCELLED, LocalModelStatus.MISSING):
        assert hub_model(status.value, status).actions == {"resume", "delete"}
    unhealthy = hub_model("crashing", LocalModelStatus.READY, unhealthy_reason="It kept crashing.")
    assert unhealthy.actions == {"configure", "make_default", "delete", "health_reset"}
    assert model_event(unhealthy)["actions"] == ["configure", "delete", "health_reset", "make_default"]


@pytest.mark.django_db
def test_services_refuse_what_the_model_does_not_allow(local_model):
    verifying = hub_model("verifying", LocalModelStatus.VERIFYING)
    with pytest.raises(Refusal, match="too late to cancel"):
        services.model_download_cancel(model=verifying)
    with pytest.raises(Refusal, match="is already installed") as refused:
        services.model_download_start(model=hub_model("ready", LocalModelStatus.READY), requested_by=None)
    assert refused.value.code == "already_installed"
    with pytest.raises(Refusal, match="already start with"):
        services.model_make_default(model=local_model)
    with pytest.raises(Refusal, match="is not installed yet"):
        services.model_settings_update(
            model=verifying,
            n_ctx=None,
            n_gpu_layers=None,
            n_threads=None,
            parallel_replies=None,
            chat_template_override="",
        )
    with pytest.raises(Refusal, match="is downloading: cancel the download first"):
        services.model_delete(model=verifying)
    assert fresh(verifying).status == LocalModelStatus.VERIFYING
    with pytest.raises(Refusal, match="is not switched off"):
        runtime.model_health_reset(model=local_model)
    LocalModel.objects.filter(pk=local_model.pk).update(unhealthy_reason="It kept crashing.")
    runtime.model_health_reset(model=fresh(local_model))
    assert fresh(local_model).unhealthy_reason == ""


@pytest.mark.django_db
def test_the_hub_page_shows_the_buttons_a_model_allows_and_the_close_codes(admin_client, local_model):
    hub_model("downloading", LocalModelStatus.DOWNLOADING, size_bytes=100)
    hub_model("failed", LocalModelStatus.FAILED, error="It broke.")
    html = admin_client.get("/hub/").content.decode()

    downloading, failed = row_of(html, "downloading"), row_of(html, "failed")
    assert ">Cancel</button>" in downloading and ">Delete</button>" not in downloading
    assert 'data-actions="cancel"' in downloading
    assert ">Resume download</button>" in failed and ">Delete</button>" in failed
    assert ">Cancel</button>" not in failed
    bundled = row_of(html, local_model.slug)
    assert "Make default" not in bundled and ">Delete</button>" not in bundled and "Save settings" in bundled
    codes = html.split('data-close-codes="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    assert json.loads(codes) == CLOSE_CODES


@pytest.mark.django_db(transaction=True)
def test_a_download_whose_stored_token_cannot_be_read_fails_saying_so(hub, admin):
    stored = HubSettings.load()
    stored.access_token_encrypted = "not-a-fernet-token"  # as if the key it was made with were gone
    stored.save()
    model = settled(services.model_add_from_hub(repo=REPO, file=FILE, requested_by=admin))
    assert model.status == LocalModelStatus.FAILED
    assert model.error.startswith("A stored secret cannot be decrypted")


@pytest.mark.django_db
def test_downloads_whose_worker_stopped_fail_and_may_be_resumed(settings):
    settings.HUB_STALE_AFTER_S = 60
    stuck = hub_model(
        "stuck", LocalModelStatus.DOWNLOADING, progress_at=timezone.now() - timedelta(minutes=5)
    )
    moving = hub_model("moving", LocalModelStatus.DOWNLOADING, progress_at=timezone.now())

    assert services.downloads_fail_stale() == 1
    assert fresh(stuck).status == LocalModelStatus.FAILED and "worker went away" in stuck.error
    assert stuck.actions == {"resume", "delete"}
    assert fresh(moving).status == LocalModelStatus.DOWNLOADING
    assert services.downloads_fail_stale(everything=True) == 1  # at start-up of the embedded server
    assert fresh(moving).status == LocalModelStatus.FAILED


@pytest.mark.django_db
def test_the_admin_lists_models_read_only(admin_client, local_model):
    assert admin_client.get(ADMIN_LIST).status_code == 200
    assert admin_client.get(f"{ADMIN_LIST}add/").status_code == 403
    page = admin_client.get(f"{ADMIN_LIST}{local_model.pk}/change/")
    assert page.status_code == 200 and 'href="/hub/"' in page.content.decode()
    admin_client.post(f"{ADMIN_LIST}{local_model.pk}/change/", {"name": "Renamed"})
    assert fresh(local_model).name != "Renamed"


@pytest.mark.django_db
def test_deleting_in_the_admin_follows_the_hubs_rules(admin_client, local_model, tmp_path):
    refused = admin_client.post(f"{ADMIN_LIST}{local_model.pk}/delete/", {"post": "yes"}, follow=True)
    assert flash(refused) == ["The bundled model ships with the app and cannot be deleted."]
    assert LocalModel.objects.filter(pk=local_model.pk).exists()

    mine = path_model(tmp_path)
    admin_client.post(f"{ADMIN_LIST}{mine.pk}/delete/", {"post": "yes"})
    assert not LocalModel.objects.filter(pk=mine.pk).exists() and (tmp_path / "Mine.gguf").exists()

    other = path_model(tmp_path, "Other")
    chosen = {"action": "delete_selected", "_selected_action": [local_model.pk, other.pk]}
    asked = admin_client.post(ADMIN_LIST, chosen)
    assert "Delete these models?" in asked.content.decode()
    assert LocalModel.objects.filter(pk=other.pk).exists()
    done = admin_client.post(ADMIN_LIST, {**chosen, "confirmed": "yes"}, follow=True)
    assert flash(done) == [
        f"{local_model}: The bundled model ships with the app and cannot be deleted.",
        "Other was deleted.",
    ]
    assert list(LocalModel.objects.values_list("pk", flat=True)) == [local_model.pk]


@pytest.mark.django_db
def test_ready_models_whose_files_are_gone_are_marked_missing_and_may_be_downloaded_again(
    local_model, tmp_path
):
    present = path_model(tmp_path, "Present")
    restored = hub_model("restored", LocalModelStatus.READY, file_path=str(tmp_path / "gone.gguf"))
    blind = hub_model(
        "blind", LocalModelStatus.READY, file_path=present.file_path, projector_path=str(tmp_path / "no.gguf")
    )
    assert services.models_missing_mark() == 2
    statuses = dict(LocalModel.objects.values_list("slug", "status"))
    assert statuses[restored.slug] == statuses[blind.slug] == LocalModelStatus.MISSING
    assert statuses[present.slug] == statuses[local_model.slug] == LocalModelStatus.READY
    assert "resume" in fresh(restored).actions
    assert services.models_missing_mark() == 0

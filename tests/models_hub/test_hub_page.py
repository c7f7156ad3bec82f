"""The hub page and its socket: who may do what, live progress, and replies from new models."""

from __future__ import annotations

import shutil
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission

from accounts.models import CrashReport
from chat.models import Conversation, Message, MessageStatus, Role
from localai_site.asgi import application
from localai_site.core.refusals import Refusal
from models_hub import runtime, services
from models_hub.bundled import BUNDLED_SLUG, bundled_model_path
from models_hub.models import LocalModel, LocalModelStatus
from models_hub.runner_protocol import KV_CACHE_SHARE_OF_F16
from tests.chat.socket_client import open_socket, session_cookie_for
from tests.conftest import PASSWORD

from .conftest import FILE, REPO, fresh, settled

MB = 1000 * 1000


@pytest.fixture
def admin_client(client, admin):
    client.login(email=admin.email, password=PASSWORD)
    return client


@pytest.fixture
def user_client(client, user):
    client.login(email=user.email, password=PASSWORD)
    return client


def flash(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def hub_socket(cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    headers += [(b"cookie", cookie)] if cookie else []
    return WebsocketCommunicator(application, "/ws/hub/", headers=headers)


@pytest.mark.django_db
def test_people_who_are_not_admins_see_the_installed_models_and_may_change_nothing(user_client, local_model):
    page = user_client.get("/hub/")
    assert page.status_code == 200
    assert "SmolLM2 135M Instruct" in page.content.decode() and "Install" not in page.content.decode()
    for url in [
        "/hub/install/smollm2-360m-instruct/",
        "/hub/add/",
        "/hub/token/",
        f"/hub/models/{BUNDLED_SLUG}/delete/",
        f"/hub/models/{BUNDLED_SLUG}/settings/",
        f"/hub/models/{BUNDLED_SLUG}/default/",
    ]:
        assert user_client.post(url, {"path": str(bundled_model_path()), "source": "path"}).status_code == 403
    assert list(LocalModel.objects.values_list("slug", flat=True)) == [BUNDLED_SLUG]


@pytest.mark.django_db
def test_the_hub_needs_a_login(client):
    response = client.get("/hub/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_admins_see_the_machine_the_catalog_and_the_workers(admin_client, local_model):
    html = admin_client.get("/hub/").content.decode()
    for text in ["GPU offload", "CPU threads", "Disk free", "Workers", "local, cloud, downloads"]:
        assert text in html
    for name in [
        "SmolLM2 1.7B Instruct",
        "Qwen2.5 7B Instruct",
        "Gemma 3 270M Instruct",
        "Llama 3.1 8B Instruct",
    ]:
        assert name in html
    assert 'aria-label="Install Qwen2.5 0.5B Instruct"' in html
    assert "Fits: needs about" in html


@pytest.mark.django_db
def test_an_admin_adds_a_gguf_file_on_the_server_and_a_non_gguf_one_is_refused(admin_client, tmp_path):
    copy = tmp_path / "my-model.gguf"
    shutil.copyfile(bundled_model_path(), copy)
    response = admin_client.post(
        "/hub/add/", {"source": "path", "path": str(copy), "name": "Mine"}, follow=True
    )
    assert flash(response) == ["Mine was added and is ready to use."]
    model = LocalModel.objects.get(name="Mine")
    assert model.is_ready and model.architecture == "llama" and model.file_path == str(copy)

    notes = tmp_path / "notes.gguf"
    notes.write_text("shopping list")
    response = admin_client.post("/hub/add/", {"source": "path", "path": str(notes)}, follow=True)
    assert flash(response) == [
        "notes.gguf: This is not a GGUF model file (it starts with b'shop', not b'GGUF')."
    ]
    assert not LocalModel.objects.filter(file_path=str(notes)).exists()

    # Removing a model added by path keeps the file: it was never the hub's.
    admin_client.post(f"/hub/models/{model.slug}/delete/")
    assert copy.exists() and not LocalModel.objects.filter(pk=model.pk).exists()


@pytest.mark.django_db
def test_per_model_settings_are_saved_and_bad_values_refused(admin_client, local_model):
    url = f"/hub/models/{local_model.slug}/settings/"
    prefix = local_model.slug
    saved = admin_client.post(url, {f"{prefix}-n_ctx": "1024", f"{prefix}-n_threads": "1"}, follow=True)
    assert "were saved" in flash(saved)[0]
    assert (fresh(local_model).n_ctx, local_model.n_threads) == (1024, 1)

    too_big = admin_client.post(url, {f"{prefix}-n_ctx": "999999"}, follow=True)
    assert flash(too_big) == ["The context size must be between 256 and the model's 8192 tokens."]
    broken = admin_client.post(
        url, {f"{prefix}-chat_template_override": "{% for m in messages %}"}, follow=True
    )
    assert flash(broken)[0].startswith("The chat template does not work:")
    assert fresh(local_model).n_ctx == 1024 and local_model.chat_template_override == ""


@pytest.mark.django_db
def test_replies_at_once_is_a_per_model_setting_from_1_to_16(admin_client, local_model):
    url = f"/hub/models/{local_model.slug}/settings/"
    field = f"{local_model.slug}-parallel_replies"
    assert "Replies at once" in admin_client.get("/hub/").content.decode()
    saved = admin_client.post(url, {field: "2"}, follow=True)
    assert "were saved" in flash(saved)[0] and fresh(local_model).parallel_replies == 2
    for bad in ("0", "17"):
        refused = admin_client.post(url, {field: bad}, follow=True)
        assert flash(refused) == ["Replies at once must be between 1 and 16."]
    assert fresh(local_model).parallel_replies == 2
    admin_client.post(url, {field: ""}, follow=True)
    assert fresh(local_model).parallel_replies is None  # the instance's LOCAL_PARALLEL_REPLIES


@pytest.mark.django_db
def test_a_text_model_has_slots_and_memory_for_each_a_vision_model_one(local_model, settings):
    settings.LOCAL_PARALLEL_REPLIES = 4
    one = runtime.load_spec_for(local_model)
    assert one.parallel == 4
    local_model.parallel_replies = 2
    two = runtime.load_spec_for(local_model)
    assert two.parallel == 2
    # Each slot holds a whole window of KV cache, its keys in 8 bits.
    window = local_model.kv_bytes_per_token * KV_CACHE_SHARE_OF_F16 * one.n_ctx
    assert one.memory_bytes - two.memory_bytes == pytest.approx(2 * window, abs=1)
    assert window > 0
    local_model.projector_path = "/models/mmproj.gguf"
    assert runtime.load_spec_for(local_model).parallel == 1


@pytest.mark.django_db
def test_the_workers_panel_shows_each_loaded_models_configuration_slots_and_prompts(
    admin_client, local_model, settings
):
    settings.LOCAL_PARALLEL_REPLIES = 3
    runtime.token_counts(model=local_model, texts=["Hello"])  # loads it in this process's runner
    html = admin_client.get("/hub/").content.decode()
    [loaded] = runtime.loaded_summary()
    assert loaded["parallel"] == 3
    assert f"{loaded['config']} · 0 of 3 replies at once · 0 prompts held" in html


@pytest.mark.django_db
def test_the_bundled_model_cannot_be_deleted_and_another_can_be_made_default(
    admin_client, local_model, tmp_path
):
    response = admin_client.post(f"/hub/models/{local_model.slug}/delete/", follow=True)
    assert flash(response) == ["The bundled model ships with the app and cannot be deleted."]
    copy = tmp_path / "other.gguf"
    shutil.copyfile(bundled_model_path(), copy)
    other = services.model_add_from_path(path=str(copy), name="Other", requested_by=None)
    admin_client.post(f"/hub/models/{other.slug}/default/")
    assert fresh(other).is_default and not fresh(local_model).is_default


@pytest.mark.django_db(transaction=True)
def test_a_model_writing_a_reply_is_not_deleted_and_deleting_frees_the_disk(hub, admin, user, settings):
    model = settled(services.model_add_from_hub(repo=REPO, file=FILE, requested_by=admin))
    folder = settings.MODELS_DIR / model.slug
    assert (folder / FILE).exists()
    conversation = Conversation.objects.create(owner=user, model=model.model_id)
    reply = Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, status=MessageStatus.STREAMING, model=model.model_id
    )
    with pytest.raises(Refusal, match="is writing 1 reply right now"):
        services.model_delete(model=model)
    assert (folder / FILE).exists() and fresh(model).is_ready

    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.DONE)
    services.model_delete(model=model)
    assert not folder.exists() and not LocalModel.objects.filter(pk=model.pk).exists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_hub_socket_is_for_admins_only(user, local_model):
    refused, code = await hub_socket(await database_sync_to_async(session_cookie_for)(user)).connect()
    assert not refused and code == 4403
    anonymous, code = await hub_socket(None).connect()
    assert not anonymous and code == 4401


def _staff_who_may_install_models(make_user):
    staff = make_user("installer@example.com", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="manage_models"))
    return staff


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_staff_who_may_install_models_but_are_not_superusers_watch_the_hub(make_user, local_model):
    staff = await database_sync_to_async(_staff_who_may_install_models)(make_user)
    socket = hub_socket(await database_sync_to_async(session_cookie_for)(staff))
    connected, _ = await socket.connect()
    assert connected
    await socket.disconnect()
    assert not await CrashReport.objects.aexists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_two_admins_watch_one_download_live(hub, admin, make_user):
    hub.rate = 40 * MB  # a few seconds: time to see it move
    other = await database_sync_to_async(make_user)(
        "second-admin@example.com", is_staff=True, is_superuser=True
    )
    watchers = [
        hub_socket(await database_sync_to_async(session_cookie_for)(person)) for person in (admin, other)
    ]
    for watcher in watchers:
        connected, _ = await watcher.connect()
        assert connected

    model = await database_sync_to_async(services.model_add_from_hub)(
        repo=REPO, file=FILE, requested_by=admin
    )
    seen: list[list[dict]] = []
    for watcher in watchers:
        events = []
        while not events or events[-1]["status"] not in ("ready", "failed"):
            event = await watcher.receive_json_from(timeout=60)
            if event["slug"] == model.slug:
                events.append(event)
        seen.append(events)
        await watcher.disconnect()

    size = (await database_sync_to_async(fresh)(model)).size_bytes
    for events in seen:
        assert [e["status"] for e in events][:2] == ["queued", "downloading"] and events[-1][
            "status"
        ] == "ready"
        assert "verifying" in [e["status"] for e in events]
        moving = [e for e in events if e["status"] == "downloading" and e["downloaded_bytes"]]
        assert len(moving) >= 3, "progress must arrive while the download runs"
        done = [e["downloaded_bytes"] for e in moving]
        assert done == sorted(done) and done[-1] == size
        assert any(e["speed_bps"] and e["eta_s"] is not None for e in moving)
    assert [e["downloaded_bytes"] for e in seen[0]] == [e["downloaded_bytes"] for e in seen[1]]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_model_just_downloaded_writes_a_real_reply(hub, admin, user, short_replies):
    model = await database_sync_to_async(services.model_add_from_hub)(
        repo=REPO, file=FILE, name="Fresh model", requested_by=admin
    )
    model = await database_sync_to_async(settled)(model)
    assert model.status == LocalModelStatus.READY, model.error
    conversation = await database_sync_to_async(Conversation.objects.create)(owner=user, model=model.model_id)
    socket = await open_socket(conversation.pk, await database_sync_to_async(session_cookie_for)(user))
    await socket.send({"type": "send", "content": "Name three colours.", "model": model.model_id})
    final = await socket.reply_finished()
    assert final["status"] == "done", final["error"]
    assert final["content"].strip() and final["model"] == model.model_id and final["provider"] == "local"
    await socket.close()


@pytest.mark.django_db
def test_the_chat_offers_ready_models_only(user_client, local_model, tmp_path):
    LocalModel.objects.create(slug="on-its-way", name="On its way", status=LocalModelStatus.DOWNLOADING)
    html = user_client.get("/").content.decode()
    assert f'value="{local_model.model_id}"' in html and "local:on-its-way" not in html


def test_a_token_too_long_for_the_form_keeps_the_stored_one_and_says_why(admin_client):
    services.hub_token_set(token="hf_" + "a" * 30)
    response = admin_client.post("/hub/token/", {"token": "hf_" + "b" * 500}, follow=True)
    assert "The access token was not saved" in response.content.decode()
    assert services.hub_token_get() == "hf_" + "a" * 30


def test_replies_go_straight_only_to_a_worker_heard_from_lately():
    from models_hub.workers import HEARTBEAT_EVERY_S, WorkerView

    def worker(beat_age_s: float, active: int = 0) -> WorkerView:
        loaded = [{"slug": "smol", "active": active, "waiting": 0, "parallel": 2}]
        queues = ["local", "local.vm.7"]
        return WorkerView("vm", 7, queues, loaded, busy=False, machine={}, at=time.time() - beat_age_s)

    assert worker(1).has_room_for("smol")
    assert not worker(1).has_room_for("other")
    assert not worker(1, active=2).has_room_for("smol"), "every slot taken"
    # One that died without a word: its heartbeat lasts a while yet, its queue is not read.
    assert not worker(HEARTBEAT_EVERY_S * 2).has_room_for("smol")

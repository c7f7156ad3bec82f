"""After erasure nothing of the person is left: not in any table, not in any file of the data
folder (the SQLite database file included), whatever the admins did about them before."""

from __future__ import annotations

import json
import secrets
import threading
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections, models
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image, PngImagePlugin

from accounts import services
from accounts.models import DataSubjectRequest, ExportArchive, Invitation, RequestKind, User
from chat.models import Conversation, Message, Role
from chat.services import upload_save
from localai_site.core.privacy import user_erase, user_export
from tests.files import uploaded

pytestmark = pytest.mark.postgres

# New each run: what a failed run left in the data folder is not found by the next.
RUN = secrets.token_hex(4)
EMAIL = f"zephyrine.quill-{RUN}@residue.example"
NAME = f"Zephyrine Quillfeather-{RUN}"
KEPT_TITLE = f"Bartholomew {RUN} the tortoise hums"  # a title is the start of the first message
KEPT_WORDS = f"{KEPT_TITLE} sea shanties at dawn, says {NAME}"
DELETED_TITLE = f"Lighthouse ledger {RUN} of Ysolde"
DELETED_WORDS = f"{DELETED_TITLE}: seventeen gulls, one kite"
FILE_BYTES = f"Inventory {RUN}: brass sextant, two oilskins".encode()
OLD_PICTURE = f"first-portrait-{RUN}"
NEW_PICTURE = f"second-portrait-{RUN}"
TRACES = [EMAIL, NAME, KEPT_TITLE, KEPT_WORDS, DELETED_TITLE, DELETED_WORDS, FILE_BYTES.decode()]
TRACES += [OLD_PICTURE, NEW_PICTURE]


def _picture(mark: str) -> SimpleUploadedFile:
    """A PNG whose bytes carry ``mark`` (a text chunk), to find the file wherever it lies."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", mark)
    image = BytesIO()
    Image.new("RGB", (4, 4), "teal").save(image, "PNG", pnginfo=info)
    return SimpleUploadedFile(f"{mark}.png", image.getvalue(), "image/png")


def _text_values() -> Iterator[tuple[str, str]]:
    """(model.field, value) of every text column of every table Django knows, sessions decoded."""
    text_fields = (models.CharField, models.TextField, models.JSONField, models.FileField)
    for model in apps.get_models(include_auto_created=True):
        names = [f.attname for f in model._meta.concrete_fields if isinstance(f, text_fields)]
        for row in model._base_manager.values_list(*names) if names else ():
            for name, value in zip(names, row, strict=True):
                yield f"{model._meta.label}.{name}", json.dumps(value, ensure_ascii=False)
    for session in Session.objects.all():
        yield "a session's data", json.dumps(session.get_decoded(), ensure_ascii=False)


def _data_folder_files() -> Iterator[tuple[str, bytes]]:
    """Every file under the data folder and every file inside a ZIP there; the models aside
    (downloaded, nobody's). On SQLite the database file is one of them."""
    for path in sorted(settings.DATA_DIR.rglob("*")):
        if not path.is_file() or path.is_relative_to(settings.MODELS_DIR):
            continue
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            continue  # another test's file, gone since the folder was listed
        yield str(path), content
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    yield f"{path} → {member}", archive.read(member)


def _where_found(traces: list[str]) -> list[tuple[str, str]]:
    """(trace, where) for each place in the database or the data folder that holds one."""
    found = [(t, where) for where, value in _text_values() for t in traces if t in value]
    if connection.vendor == "sqlite":
        # Into the database file what the write-ahead log still holds (deleted rows are zeroed
        # there: secure_delete in settings).
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert cursor.fetchone()[0] == 0, "a reader held the checkpoint off"
    for where, content in _data_folder_files():
        found += [(t, where) for t in traces if t.encode() in content]
    return found


def _admin_action(client, model: str, action: str, pk) -> None:
    data = {"action": action, "_selected_action": [str(pk)], "confirmed": "yes"}
    assert client.post(reverse(f"admin:{model}_changelist"), data).status_code == 302


class _ExportBeingBuilt:
    """A real build of the person's export, in another thread, held once its ZIP is written
    as a slow build would be; ``finish()`` lets it end."""

    def __init__(self, user: User, monkeypatch) -> None:
        self.written, self.go_on = threading.Event(), threading.Event()
        build_zip = services.user_export

        def build_slowly(**kwargs):
            counts = build_zip(**kwargs)
            self.written.set()
            assert self.go_on.wait(timeout=60)
            return counts

        monkeypatch.setattr(services, "user_export", build_slowly)
        expires = timezone.now() + timedelta(days=7)
        self.archive = ExportArchive.objects.create(user=user, expires_at=expires)
        self.thread = threading.Thread(target=self._build)
        self.thread.start()
        assert self.written.wait(timeout=60), "the export's ZIP to be written"

    def _build(self) -> None:
        try:
            services.export_build(archive_id=self.archive.pk)
        finally:
            connections.close_all()

    def finish(self) -> None:
        self.go_on.set()
        self.thread.join(timeout=60)


@pytest.mark.django_db(transaction=True)  # committed for real, so the database file holds it
def test_after_erasure_no_byte_of_the_person_is_left_anywhere(client, make_user, monkeypatch):
    admin = make_user("dpo.residue@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    person = make_user(EMAIL, display_name=NAME)
    own = Client()
    own.force_login(person)
    for picture in (OLD_PICTURE, NEW_PICTURE):  # the first picture is replaced by the second
        profile = {"display_name": NAME, "avatar": _picture(picture)}
        assert own.post(reverse("accounts:profile"), profile).status_code == 302
    kept = Conversation.objects.create(owner=person, model="local:m", title=KEPT_TITLE)
    Message.objects.create(conversation=kept, role=Role.USER, content=KEPT_WORDS)
    Message.objects.create(conversation=kept, role=Role.ASSISTANT, content=f"Ahoy, {NAME}!")
    upload_save(owner=person, conversation=kept, file=uploaded("inventory.txt", FILE_BYTES, "text/plain"))
    deleted = Conversation.objects.create(owner=person, model="local:m", title=DELETED_TITLE)
    Message.objects.create(conversation=deleted, role=Role.USER, content=DELETED_WORDS)
    # What admins did about them: an invitation, the request, a look at one conversation, and
    # deleting the other; each is in admin history.
    client.post(reverse("admin:accounts_invitation_add"), {"email": EMAIL})
    services.user_signup_complete(user=person, invitation_token=Invitation.objects.get(email=EMAIL).token)
    now = timezone.localtime()
    request_form = {
        "kind": RequestKind.ERASURE, "regime": "gdpr", "subject": person.pk, "subject_email": EMAIL,
        "received_at_0": now.date().isoformat(), "received_at_1": now.strftime("%H:%M:%S"),
        "verification": f"{NAME} showed her passport by video; wrote from {EMAIL}", "status": "received",
    }  # fmt: skip
    client.post(reverse("admin:accounts_datasubjectrequest_add"), request_form)
    data_request = DataSubjectRequest.objects.get(subject=person)
    client.post(reverse("admin:chat_conversation_change", args=[kept.pk]), {})
    client.post(reverse("admin:chat_conversation_delete", args=[deleted.pk]), {"post": "yes"})
    assert LogEntry.objects.count() == 4
    export = _ExportBeingBuilt(person, monkeypatch)
    # The scan sees them in rows, in files and inside the ZIP being built.
    before = _where_found(TRACES)
    assert {EMAIL, NAME, KEPT_TITLE, KEPT_WORDS, FILE_BYTES.decode(), NEW_PICTURE} <= {t for t, _ in before}
    assert any(t == KEPT_WORDS and where.endswith("→ messages.json") for t, where in before)

    _admin_action(client, "accounts_datasubjectrequest", "carry_out", data_request.pk)
    export.finish()

    assert not User.objects.filter(pk=person.pk).exists()
    assert _where_found(TRACES) == []
    assert LogEntry.objects.count() == 4  # the history keeps its shape


def test_a_replaced_or_cleared_profile_picture_leaves_storage(
    client, user, django_capture_on_commit_callbacks
):
    client.force_login(user)
    stored = []
    for picture in (OLD_PICTURE, NEW_PICTURE):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("accounts:profile"), {"display_name": "Ann", "avatar": _picture(picture)})
        user.refresh_from_db()
        stored.append(user.avatar)
    assert not stored[0].storage.exists(stored[0].name) and stored[1].storage.exists(stored[1].name)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("accounts:profile"), {"display_name": "Ann", "avatar-clear": "on"})
    user.refresh_from_db()
    assert not user.avatar and not stored[1].storage.exists(stored[1].name)


def test_a_profile_picture_replaced_in_the_admin_leaves_storage(
    client, user, admin, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    change = reverse("admin:accounts_user_change", args=[user.pk])
    consents = client.get(change).context["inline_admin_formsets"][0].formset.prefix
    joined = timezone.localtime(user.date_joined)
    stored = []
    for picture in (OLD_PICTURE, NEW_PICTURE):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                change,
                {
                    "email": user.email,
                    "display_name": "Ann",
                    "avatar": _picture(picture),
                    "is_active": "on",
                    "date_joined_0": joined.date().isoformat(),
                    "date_joined_1": joined.strftime("%H:%M:%S"),
                    f"{consents}-TOTAL_FORMS": "0",
                    f"{consents}-INITIAL_FORMS": "0",
                },
            )
        assert response.status_code == 302
        user.refresh_from_db()
        stored.append(user.avatar)
    assert not stored[0].storage.exists(stored[0].name) and stored[1].storage.exists(stored[1].name)
    stored[1].delete(save=False)  # the residue test looks for this picture in the data folder


def _history(*, by: User, about: models.Model, text: str) -> LogEntry:
    return LogEntry.objects.create(
        user=by,
        content_type=ContentType.objects.get_for_model(about),
        object_id=str(about.pk),
        object_repr=text,
        action_flag=CHANGE,
        change_message=json.dumps([{"changed": {"fields": ["Note"], "note": text}}]),
    )


@pytest.mark.django_db
def test_erasure_scrubs_admin_history_about_the_persons_rows_and_naming_their_email(user, make_user):
    admin = make_user("root@example.com", is_staff=True)
    conversation = Conversation.objects.create(owner=user, model="local:m", title="Ann's secret plans")
    invitation = Invitation.objects.create(email=user.email, accepted_by=user)
    data_request = services.data_request_save(
        request=DataSubjectRequest(kind=RequestKind.ACCESS, subject=user)
    )
    about_rows = [
        _history(by=admin, about=conversation, text=conversation.title),
        _history(by=admin, about=invitation, text=str(invitation)),
        _history(by=admin, about=data_request, text=str(data_request)),
    ]
    gone = Invitation.objects.create(email=user.email)  # deleted before the erasure
    naming_email = _history(by=admin, about=gone, text=str(gone))
    gone.delete()
    someone_else = _history(by=admin, about=admin, text="root@example.com")

    receipt = user_erase(user=user)

    for entry in [*about_rows, naming_email]:
        entry.refresh_from_db()
        assert "ann" not in (entry.object_repr + entry.change_message).lower()
        assert entry.user == admin and entry.action_flag == CHANGE  # who did what, and when, stay
    someone_else.refresh_from_db()
    assert someone_else.object_repr == "root@example.com" and "root@" in someone_else.change_message
    assert receipt["admin.LogEntry (scrubbed)"] == 4


@pytest.mark.django_db
def test_an_admin_deleting_a_conversation_leaves_its_title_out_of_admin_history(client, user, make_user):
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    conversation = Conversation.objects.create(owner=user, model="local:m", title="Ann's secret plans")
    client.force_login(admin)
    client.post(reverse("admin:chat_conversation_delete", args=[conversation.pk]), {"post": "yes"})
    entry = LogEntry.objects.get()
    assert not Conversation.objects.exists()
    assert entry.object_id == str(conversation.pk) and entry.object_repr == "deleted conversation"


@pytest.mark.django_db
def test_a_pseudonymised_data_request_keeps_no_free_text_about_the_person(user, make_user):
    admin = make_user("dpo@example.com", is_staff=True)
    request = services.data_request_save(
        request=DataSubjectRequest(
            kind=RequestKind.ERASURE,
            subject=user,
            verification="Ann showed her passport; ann@example.com",
            extension_reason="Ann's files are many",
        )
    )
    services.data_request_carry_out(request=request, actor=admin)
    request.refresh_from_db()
    assert request.verification == "" and request.extension_reason == ""
    assert request.subject_reference and request.completed_at


@pytest.mark.django_db
def test_an_export_built_while_its_account_is_erased_leaves_no_zip(user, monkeypatch):
    """The build read the person before the erasure and writes after it: the ZIP it leaves
    holds them, and no row names it any more."""
    build_zip = services.user_export

    def erased_meanwhile(**kwargs):
        user_erase(user=User.objects.get(pk=kwargs["user"].pk))  # another process's copy of them
        return build_zip(**kwargs)

    monkeypatch.setattr(services, "user_export", erased_meanwhile)
    archive = ExportArchive.objects.create(user=user, expires_at=timezone.now() + timedelta(days=1))
    services.export_build(archive_id=archive.pk)
    assert not (settings.MEDIA_ROOT / "exports" / f"{archive.token}.zip").exists()


@pytest.mark.django_db
def test_an_admins_own_export_says_nothing_of_the_people_their_history_is_about(make_user, tmp_path):
    admin = make_user("root@example.com", is_staff=True)
    bob = make_user("bob@example.com", display_name="Bob Keeper")
    _history(by=admin, about=bob, text="bob@example.com, Bob Keeper")
    user_export(user=admin, destination=tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        actions = json.loads(archive.read("admin_actions.json"))
        everything = b"".join(archive.read(name) for name in archive.namelist())
    assert [entry["action_flag"] for entry in actions] == [CHANGE]
    assert b"bob@" not in everything and b"Bob Keeper" not in everything

"""The personal-data registry, export and erasure."""

import json
import zipfile
from io import BytesIO

import pytest
from allauth.account.models import EmailAddress, EmailConfirmation
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.apps import apps
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from PIL import Image

from accounts.analytics import usage_record
from accounts.models import ConsentPurpose, ConsentSource, Invitation, UsageEventName, User
from accounts.services import consent_set, policy_publish
from billing.models import Invoice, UsageKind
from billing.services import plan_assign, quota_spend
from chat.models import Conversation, Message, Persona, Role
from chat.services import upload_save
from localai_site.core.privacy import registry, user_erase, user_export
from tests.files import uploaded

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _linked_to_user(model, seen=frozenset()) -> bool:
    """Whether rows of ``model`` point to a user, directly or through other models."""
    if model is User:
        return True
    for field in model._meta.concrete_fields:
        target = field.related_model
        unseen = field.is_relation and target is not None and target not in seen | {model}
        if unseen and _linked_to_user(target, seen | {model}):
            return True
    return False


def test_every_model_that_links_to_a_person_is_in_the_registry():
    registered = {entry.model for entry in registry()}
    missing = [m._meta.label for m in apps.get_models() if _linked_to_user(m) and m not in registered]
    assert missing == [], f"add these to an app's privacy.py: {missing}"


def test_registry_entries_name_real_fields_and_distinct_export_files():
    categories = [e.category for e in registry() if e.category]
    assert len(categories) == len(set(categories))
    for entry in registry():
        names = {f.name for f in entry.model._meta.get_fields()} | {
            f.attname for f in entry.model._meta.concrete_fields
        }
        assert set(entry.fields) <= names, entry
        assert set(entry.files) <= names, entry


def _avatar(name="me.png"):
    image = BytesIO()
    Image.new("RGB", (4, 4), "blue").save(image, "PNG")
    return SimpleUploadedFile(name, image.getvalue(), "image/png")


def _fill_everything_for(user: User, other: User) -> dict:
    """A row in every registered model for ``user``; returns what identifies them."""
    user.avatar = _avatar()
    user.save()
    address = EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    EmailConfirmation.create(address)
    app = SocialApp.objects.get_or_create(provider="google", name="Google", client_id="cid", secret="s")[0]
    social = SocialAccount.objects.create(user=user, provider="google", uid=f"uid-{user.pk}-{user.email}")
    SocialToken.objects.create(app=app, account=social, token=f"token-of-{user.email}")
    Invitation.objects.create(email=user.email, created_by=other, accepted_by=user)
    sent = Invitation.objects.create(email="friend@example.com", created_by=user)
    persona = Persona.objects.create(owner=user, name=f"{user.display_name}'s muse", system_prompt="Be kind.")
    conversation = Conversation.objects.create(
        owner=user, model="local:m", title=f"Plans of {user.display_name}"
    )
    Message.objects.create(conversation=conversation, role=Role.USER, content=f"I am {user.display_name}")
    Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, content="Hello!", provider="openai"
    )
    in_chat = upload_save(
        owner=user,
        conversation=conversation,
        file=uploaded(f"{user.display_name}.txt", f"Notes of {user.display_name}, {user.email}".encode()),
    )
    loose = upload_save(owner=user, conversation=None, file=uploaded("photo.png"))
    user_type = ContentType.objects.get_for_model(User)
    LogEntry.objects.create(
        user=user,
        content_type=user_type,
        object_id=str(other.pk),
        object_repr=other.email,
        action_flag=CHANGE,
    )
    LogEntry.objects.create(
        user=other,
        content_type=user_type,
        object_id=str(user.pk),
        object_repr=user.email,
        action_flag=ADDITION,
        change_message=f"Added {user.email}",
    )
    consent_set(user=user, purpose=ConsentPurpose.ANALYTICS, given=True, source=ConsentSource.SETTINGS)
    usage_record(user=user, name=UsageEventName.MESSAGE_SENT, model="local:m", provider="local")
    policy_publish(body="Our policy.", summary="", significant=False, published_by=user)
    plan_assign(user=user, plan=None)
    quota_spend(user=user, kind=UsageKind.IMAGE)
    Invoice.objects.create(
        user=user, stripe_invoice_id=f"in_of_{user.pk}", stripe_customer_id=f"cus_of_{user.email}",
        created_at=timezone.now(), amount=900, currency="eur", status="paid",
        hosted_invoice_url=f"https://invoice.stripe.test/{user.email}", state_at=timezone.now(),
    )  # fmt: skip
    from django.test import Client

    Client().force_login(user)  # a live session
    return {
        "persona": persona,
        "conversation": conversation,
        "sent_invitation": sent,
        "avatar": user.avatar.name,
        "uploads": [in_chat, loose],
    }


def _database_text() -> str:
    """Every value in every table, as text."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            parts.extend(str(row) for row in cursor.fetchall())
    return "\n".join(parts)


def _media_files(root) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_erasure_leaves_nothing_of_the_person_and_touches_nobody_else(
    make_user, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"  # this test's files alone, to search them all
    ann = make_user("ann.erased@example.com", display_name="Annabel Erasedottir")
    bob = make_user("bob.kept@example.com", display_name="Bob Keeper")
    ann_things = _fill_everything_for(ann, bob)
    _fill_everything_for(bob, ann)
    bob_rows_before = {e.label + e.owner: e.rows_of(bob).count() for e in registry()}
    ann_pk = ann.pk

    with django_capture_on_commit_callbacks(execute=True):  # files go once the rows are gone
        receipt = user_erase(user=ann)

    text = _database_text()
    media = _media_files(settings.MEDIA_ROOT)
    traces = [
        "ann.erased@example.com",
        "Annabel Erasedottir",
        str(ann_things["conversation"].pk),
        f"uid-{ann_pk}-",
        *(str(upload.pk) for upload in ann_things["uploads"]),
    ]
    for trace in traces:
        assert trace not in text, f"{trace!r} is still in the database"
        for name, content in media.items():
            assert trace not in name and trace.encode() not in content, f"{trace!r} is still in {name}"
    assert not User.objects.filter(pk=ann_pk).exists()
    ann_files = [ann_things["avatar"], *(upload.file.name for upload in ann_things["uploads"])]
    assert set(ann_files).isdisjoint(media)
    assert b"Notes of Bob Keeper" in media[bob.uploads.get(conversation__isnull=False).file.name]
    # What Ann sent as an admin belongs to the people invited: kept, without her.
    ann_things["sent_invitation"].refresh_from_db()
    assert ann_things["sent_invitation"].created_by is None
    # Bob lost nothing, except Ann's invitation of him and the admin entry Ann made.
    bob.refresh_from_db()
    for entry in registry():
        key = entry.label + entry.owner
        if key in ("accounts.Invitationcreated_by",):
            continue
        assert entry.rows_of(bob).count() == bob_rows_before[key], key
    assert (settings.MEDIA_ROOT / bob.avatar.name).exists()
    # The receipt counts, and says nothing of what was erased.
    assert (
        receipt["chat.Message"] == 2 and receipt["chat.Conversation"] == 1 and receipt["accounts.User"] == 1
    )
    assert receipt["chat.Upload"] == 2
    assert receipt["sessions"] == 1 and receipt["admin.LogEntry (scrubbed)"] == 2  # Bob wrote two about Ann
    assert "Annabel" not in json.dumps(receipt) and "ann.erased" not in json.dumps(receipt)


def test_export_holds_every_category_the_files_a_manifest_and_an_index(make_user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    ann = make_user("ann@example.com", display_name="Ann")
    bob = make_user("bob@example.com", display_name="Bob")
    _fill_everything_for(ann, bob)
    _fill_everything_for(bob, ann)
    archive_path = tmp_path / "export.zip"
    counts = user_export(user=ann, destination=archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        messages = json.loads(archive.read("messages.json"))
        profile = json.loads(archive.read("profile.json"))
        index = archive.read("index.html").decode()
        uploads = json.loads(archive.read("uploads.json"))
        originals = {u["original_name"]: archive.read(f"files/{u['file']}") for u in uploads}
        assert any(name.startswith("files/avatars/") for name in names)
    assert originals == {
        "Ann.txt": b"Notes of Ann, ann@example.com",
        "photo.png": uploaded("photo.png").read(),
    }
    assert {c["name"] for c in manifest["categories"]} == {e.category for e in registry() if e.category}
    assert len(profile) == 1 and profile[0]["email"] == "ann@example.com"
    assert [m["content"] for m in messages] == ["I am Ann", "Hello!"]
    assert {r["recipient"] for r in manifest["recipients"]} == {"this instance", "openai"}
    assert "Bob" not in json.dumps(messages) and counts["messages"] == 2
    assert "token-of" not in json.dumps(manifest) and "Who received your messages" in index
    assert manifest["schema_version"] == 1 and manifest["generated_at"]
    conversation = ann.conversations.get()
    [page] = manifest["pages"]["Your conversations"]
    assert page["file"] == f"conversations/{conversation.pk}.html" and page["title"] == "Plans of Ann"
    assert f'href="{page["file"]}"' in index


def test_the_readable_export_escapes_what_people_and_models_wrote(make_user, tmp_path):
    ann = make_user("ann@example.com")
    conversation = Conversation.objects.create(owner=ann, model="local:m", title="<b>bold</b> title")
    Message.objects.create(conversation=conversation, role=Role.USER, content="<script>alert('you')</script>")
    Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, content="<img src=x onerror=alert(1)> **fine**"
    )
    user_export(user=ann, destination=tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        page = archive.read(f"conversations/{conversation.pk}.html").decode()
        index = archive.read("index.html").decode()
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;you&#x27;)&lt;/script&gt;" in page
    assert "<img" not in page and "<strong>fine</strong>" in page  # raw HTML stays text
    assert "<b>bold</b>" not in page + index and "&lt;b&gt;bold&lt;/b&gt; title" in index


def test_operators_can_export_and_erase_from_the_command_line(make_user, tmp_path, capsys):
    ann = make_user("ann@example.com")
    call_command("export_user", "ann@example.com", output=tmp_path / "ann.zip")
    assert zipfile.is_zipfile(tmp_path / "ann.zip")
    with pytest.raises(Exception, match="--yes"):
        call_command("erase_user", "ann@example.com")
    assert User.objects.filter(pk=ann.pk).exists()
    call_command("erase_user", "ann@example.com", yes=True)
    assert not User.objects.filter(pk=ann.pk).exists()
    assert '"accounts.User": 1' in capsys.readouterr().out


def test_erasure_finds_the_persons_sessions_before_its_write_transaction(user, monkeypatch):
    """Finding them decodes every session; inside the transaction (on SQLite a write lock
    from its first statement) every other writer would wait for that."""
    from django.contrib.sessions.models import Session
    from django.test import Client

    Client().force_login(user)
    Client().force_login(User.objects.create_user(email="someone.else@example.com", password="x"))
    before = len(connection.atomic_blocks)  # the test's own transaction
    depths = []
    decode = Session.get_decoded

    def decode_recorded(session):
        depths.append(len(connection.atomic_blocks))
        return decode(session)

    monkeypatch.setattr(Session, "get_decoded", decode_recorded)
    receipt = user_erase(user=user)
    assert depths == [before, before]
    assert receipt["sessions"] == 1 and Session.objects.count() == 1

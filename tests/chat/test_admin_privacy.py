"""What staff see of people's conversations and personas in the admin: ids, owners, models,
counts and dates, never a title, a message or a private persona's words."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from chat.models import Conversation, Message, Persona
from chat.services import upload_save
from tests.files import uploaded

pytestmark = pytest.mark.django_db

TITLE = "Ann's divorce papers"
TEXT = "my husband hid the savings in Jersey"
FILE_NAME = "custody-agreement.txt"
PROMPT = "You are Ann's counsellor; she is grieving her brother"
DESCRIPTION = "Helps Ann through her grief"


@pytest.fixture
def staff_client(client, admin):
    client.force_login(admin)  # a superuser: the admin reads nothing even for them
    return client


@pytest.fixture
def chat(make_conversation, user) -> Conversation:
    conversation = make_conversation(user, title=TITLE)
    Message.objects.create(conversation=conversation, role="user", content=TEXT)
    Message.objects.create(conversation=conversation, role="assistant", content=f"About {TEXT}…")
    upload_save(owner=user, conversation=conversation, file=uploaded(FILE_NAME, b"notes", "text/plain"))
    return conversation


def _pages(client, *urls: str) -> str:
    pages = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages.append(response.content.decode())
    return "\n".join(pages)


def test_staff_see_a_conversations_metadata_but_not_its_title_messages_or_files(staff_client, chat, user):
    message = chat.messages.first()
    page = _pages(
        staff_client,
        reverse("admin:chat_conversation_changelist"),
        reverse("admin:chat_conversation_change", args=[chat.pk]),
        reverse("admin:chat_conversation_history", args=[chat.pk]),
        reverse("admin:chat_conversation_delete", args=[chat.pk]),
        reverse("admin:chat_message_changelist"),
        reverse("admin:chat_message_change", args=[message.pk]),
    )
    for private in (TITLE, "divorce", TEXT, "Jersey", FILE_NAME, "custody"):
        assert private not in page.replace("&#x27;", "'")
    assert str(chat.pk) in page and user.email in page and chat.model in page
    # The delete confirmation still says how much goes.
    confirm = staff_client.get(reverse("admin:chat_conversation_delete", args=[chat.pk])).content.decode()
    assert "Messages: 2" in confirm and "Uploads: 1" in confirm


def test_the_conversation_list_counts_messages(staff_client, chat):
    page = staff_client.get(reverse("admin:chat_conversation_changelist")).content.decode()
    assert '<td class="field-message_count">2</td>' in page


def test_searching_the_admin_does_not_search_titles_or_messages(staff_client, chat, user):
    for term in ("divorce", "Jersey"):
        page = staff_client.get(reverse("admin:chat_conversation_changelist"), {"q": term}).content.decode()
        assert str(chat.pk) not in page
    page = staff_client.get(reverse("admin:chat_conversation_changelist"), {"q": user.email}).content.decode()
    assert str(chat.pk) in page


def test_deleting_a_conversation_in_the_admin_leaves_its_title_nowhere(staff_client, chat):
    response = staff_client.post(
        reverse("admin:chat_conversation_delete", args=[chat.pk]), {"post": "yes"}, follow=True
    )
    assert not Conversation.objects.exists()
    page = response.content.decode() + _pages(staff_client, reverse("admin:index"))
    assert "divorce" not in page
    assert "divorce" not in " ".join(LogEntry.objects.values_list("object_repr", flat=True))


@pytest.fixture
def private_persona(user) -> Persona:
    return Persona.objects.create(
        owner=user, name="Counsellor", description=DESCRIPTION, system_prompt=PROMPT
    )


def test_staff_see_a_private_personas_metadata_but_not_its_prompt(staff_client, private_persona, user):
    page = _pages(
        staff_client,
        reverse("admin:chat_persona_changelist"),
        reverse("admin:chat_persona_change", args=[private_persona.pk]),
    )
    assert PROMPT not in page.replace("&#x27;", "'") and "grieving" not in page and "grief" not in page
    assert user.email in page and "Counsellor" in page
    assert (
        staff_client.get(reverse("admin:chat_persona_changelist"), {"q": "grieving"})
        .context["cl"]
        .result_count
        == 0
    )


def test_staff_cannot_share_a_private_persona_and_so_publish_its_prompt(staff_client, private_persona, user):
    response = staff_client.post(
        reverse("admin:chat_persona_change", args=[private_persona.pk]),
        {"name": "Counsellor", "system_prompt": "changed", "is_shared": "on", "owner": user.pk},
    )
    assert response.status_code == 403
    private_persona.refresh_from_db()
    assert not private_persona.is_shared and private_persona.system_prompt == PROMPT


def test_a_shared_persona_stays_fully_visible_and_editable(staff_client, admin):
    shared = Persona.objects.create(
        owner=admin, name="Tutor", system_prompt="Explain step by step.", is_shared=True
    )
    page = staff_client.get(reverse("admin:chat_persona_change", args=[shared.pk])).content.decode()
    assert "Explain step by step." in page
    response = staff_client.post(
        reverse("admin:chat_persona_change", args=[shared.pk]),
        {"name": "Tutor", "system_prompt": "Explain it twice.", "is_shared": "on", "owner": admin.pk},
    )
    assert response.status_code == 302
    shared.refresh_from_db()
    assert shared.system_prompt == "Explain it twice."


def test_old_admin_history_no_longer_quotes_conversation_titles(chat, make_conversation, user, admin):
    gone = make_conversation(user, title="Ann's secret plans")
    about = ContentType.objects.get_for_model(Conversation)
    for conversation, flag in ((chat, CHANGE), (gone, DELETION)):
        LogEntry.objects.create(
            user=admin, content_type=about, object_id=str(conversation.pk), object_repr=conversation.title,
            action_flag=flag, change_message='[{"changed": {"fields": ["Title"]}}]',
        )  # fmt: skip
    Conversation.objects.filter(pk=gone.pk).delete()
    someone = LogEntry.objects.create(
        user=admin, content_type=ContentType.objects.get_for_model(Persona), object_id="1",
        object_repr="Tutor", action_flag=CHANGE,
    )  # fmt: skip

    migration = importlib.import_module("chat.migrations.0006_admin_history_without_titles")
    migration.titles_scrub(apps, None)

    shown = dict(LogEntry.objects.filter(content_type=about).values_list("object_id", "object_repr"))
    assert shown == {str(chat.pk): f"Conversation {chat.pk}", str(gone.pk): "deleted conversation"}
    assert not LogEntry.objects.filter(content_type=about).exclude(change_message="").exists()
    someone.refresh_from_db()
    assert someone.object_repr == "Tutor"

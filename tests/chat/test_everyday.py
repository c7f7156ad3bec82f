"""Everyday chat: history, personas, regenerate, edit, search, context fitting."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat import selectors, services
from chat.events import message_payload
from chat.models import Conversation, Message, MessageStatus, Persona, Role
from chat.providers import model_resolve, provider_for
from chat.services.prompt import TURN_OVERHEAD_TOKENS
from localai_site.core.refusals import Refusal

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _exchange(conversation, question, answer):
    Message.objects.create(conversation=conversation, role=Role.USER, content=question)
    return Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, content=answer, status=MessageStatus.DONE
    )


def test_regenerate_replaces_the_last_reply_with_a_new_one(conversation):
    last = _exchange(conversation, "Hi", "Hello!")
    new_reply = services.reply_regenerate(conversation=conversation, message_id=last.pk)
    assert not Message.objects.filter(pk=last.pk).exists()
    assert new_reply.status == MessageStatus.QUEUED and new_reply.role == Role.ASSISTANT
    assert list(conversation.messages.values_list("role", flat=True)) == ["user", "assistant"]


def test_only_the_last_reply_can_be_regenerated(conversation):
    first = _exchange(conversation, "Hi", "Hello!")
    _exchange(conversation, "And?", "And more.")
    with pytest.raises(Refusal) as error:
        services.reply_regenerate(conversation=conversation, message_id=first.pk)
    assert error.value.code == "not_last_reply"


def test_editing_a_message_replaces_what_followed_and_answers_again(conversation):
    _exchange(conversation, "Name a colour", "Blue")
    question = conversation.messages.get(content="Name a colour")
    _exchange(conversation, "Another", "Red")
    reply = services.message_edit(conversation=conversation, message_id=question.pk, content="Name a fruit")
    question.refresh_from_db()
    assert question.content == "Name a fruit"
    assert list(conversation.messages.values_list("content", "status")) == [
        ("Name a fruit", MessageStatus.DONE),
        ("", MessageStatus.QUEUED),
    ]
    assert reply.pk == conversation.messages.last().pk


def test_a_reply_cannot_be_edited_and_others_messages_are_not_found(
    conversation, make_conversation, other_user
):
    reply = _exchange(conversation, "Hi", "Hello!")
    theirs = make_conversation(other_user)
    their_message = Message.objects.create(conversation=theirs, role=Role.USER, content="mine")
    for message_id in (reply.pk, their_message.pk):
        with pytest.raises(Refusal) as error:
            services.message_edit(conversation=conversation, message_id=message_id, content="changed")
        assert error.value.code == "not_found"
    their_message.refresh_from_db()
    assert their_message.content == "mine"


def test_rename_and_pin(conversation):
    services.conversation_rename(conversation=conversation, title="  Trip   plans ")
    services.conversation_pin(conversation=conversation, pinned=True)
    conversation.refresh_from_db()
    assert (conversation.title, conversation.pinned) == ("Trip plans", True)
    with pytest.raises(Refusal):
        services.conversation_rename(conversation=conversation, title="   ")


def test_search_finds_titles_and_message_text_of_ones_own_conversations(user, other_user, make_conversation):
    by_title = make_conversation(user, title="Lighthouse keeper")
    by_text = make_conversation(user, title="Other")
    _exchange(by_text, "Tell me about the lighthouse", "Sure")
    make_conversation(user, title="Unrelated")
    theirs = make_conversation(other_user, title="Lighthouse too")
    found = set(selectors.conversations_for(user=user, search="lighthouse"))
    assert found == {by_title, by_text}
    assert theirs not in found


def test_the_list_is_grouped_by_date_with_pinned_first(user, make_conversation):
    now = timezone.now()
    ages = {"today": 0, "yesterday": 1, "week": 5, "month": 20, "old": 90}
    made = {}
    for name, days in ages.items():
        made[name] = make_conversation(user, title=name)
        Conversation.objects.filter(pk=made[name].pk).update(updated_at=now - timedelta(days=days))
    Conversation.objects.filter(pk=made["old"].pk).update(pinned=True)
    groups = selectors.conversations_grouped(list(selectors.conversations_for(user=user)))
    assert [(g.label, [c.title for c in g.conversations]) for g in groups] == [
        ("Pinned", ["old"]),
        ("Today", ["today"]),
        ("Yesterday", ["yesterday"]),
        ("Previous 7 days", ["week"]),
        ("Previous 30 days", ["month"]),
    ]


def test_a_long_conversation_opens_with_its_newest_page_and_loads_older_ones(client, user, conversation):
    Message.objects.bulk_create(
        [Message(conversation=conversation, role=Role.USER, content=f"message {i}") for i in range(120)]
    )
    client.force_login(user)
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "message 119" in page and "message 70" in page and "message 69" not in page
    oldest_shown = Message.objects.get(content="message 70").pk
    older = client.get(reverse("chat:older", args=[conversation.pk]), {"before": oldest_shown})
    assert older["X-Has-Older"] == "1"
    assert "message 69" in older.content.decode() and "message 19" not in older.content.decode()


def test_older_messages_of_another_persons_conversation_are_not_found(client, other_user, conversation):
    client.force_login(other_user)
    response = client.get(reverse("chat:older", args=[conversation.pk]), {"before": 10**9})
    assert response.status_code == 404


def test_a_persona_gives_the_conversation_its_system_prompt_and_temperature(user, local_model):
    persona = Persona.objects.create(
        owner=user, name="Pirate", system_prompt="Talk like a pirate.", temperature=0.2
    )
    conversation = services.conversation_create(owner=user, persona_id=persona.pk, remember_persona=True)
    _, reply = services.message_send(conversation=conversation, content="Hello")
    provider = provider_for(model_resolve(reply.model))
    prompt = services.prompt_build(reply=reply, provider=provider, context_length=4096, max_tokens=64)
    assert prompt.turns[0].role == "system" and prompt.turns[0].content == "Talk like a pirate."
    assert prompt.omitted == 0
    user.refresh_from_db()
    assert user.default_persona == persona, "the persona picked is remembered for the next chat"


def test_another_persons_private_persona_cannot_be_used(user, other_user, local_model):
    theirs = Persona.objects.create(owner=other_user, name="Secret", system_prompt="x")
    with pytest.raises(Refusal) as error:
        services.conversation_create(owner=user, persona_id=theirs.pk)
    assert error.value.code == "unknown_persona"


def test_shared_and_builtin_personas_are_offered_to_everyone(user, other_user):
    from importlib import import_module

    from django.apps import apps

    # The data migration's own function: tests that flush the database remove its rows.
    import_module("chat.migrations.0002_builtin_personas").add_builtin(apps, None)
    shared = Persona.objects.create(name="Team voice", system_prompt="x", is_shared=True)
    private = Persona.objects.create(owner=other_user, name="Private", system_prompt="x")
    visible = set(selectors.personas_visible(user=user))
    assert shared in visible and private not in visible
    assert Persona.objects.filter(is_builtin=True).count() == 4
    assert set(Persona.objects.filter(is_builtin=True)) <= visible


def test_people_manage_their_own_personas_in_the_browser(client, user, other_user):
    client.force_login(user)
    response = client.post(
        reverse("chat:persona_new"),
        {"name": "Tutor", "system_prompt": "Explain step by step.", "temperature": "0.3"},
    )
    assert response.status_code == 302
    persona = Persona.objects.get(name="Tutor")
    assert persona.owner == user and not persona.is_shared
    bad = client.post(reverse("chat:persona_new"), {"name": "Hot", "system_prompt": "x", "temperature": "5"})
    assert bad.status_code == 200 and not Persona.objects.filter(name="Hot").exists()
    client.force_login(other_user)
    assert client.get(reverse("chat:persona_edit", args=[persona.pk])).status_code == 404
    assert client.post(reverse("chat:persona_delete", args=[persona.pk])).status_code == 404
    assert Persona.objects.filter(pk=persona.pk).exists()


def test_deleting_a_persona_leaves_the_conversations_that_used_it(client, user, local_model):
    persona = Persona.objects.create(owner=user, name="Pirate", system_prompt="Talk like a pirate.")
    conversation = services.conversation_create(owner=user, persona_id=persona.pk, remember_persona=True)
    client.force_login(user)
    assert client.post(reverse("chat:persona_delete", args=[persona.pk])).status_code == 302
    assert not Persona.objects.filter(pk=persona.pk).exists()
    conversation.refresh_from_db()
    user.refresh_from_db()
    assert conversation.persona is None and user.default_persona is None


def test_the_personas_page_lists_the_personas_a_signed_in_person_can_use(client, user):
    Persona.objects.create(owner=user, name="Ship's cook", system_prompt="Talk like a cook.")
    client.force_login(user)
    response = client.get(reverse("chat:personas"))
    assert response.status_code == 200
    assert "Ship&#x27;s cook" in response.content.decode()


def test_a_reply_is_shown_the_same_on_the_page_and_over_the_socket(client, user, conversation):
    reply = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        model=conversation.model,
        content="**Hi** <b>there</b>",
        status=MessageStatus.DONE,
        completion_tokens=12,
        ttft_ms=200,
        duration_ms=1200,
        omitted_turns=1,
    )
    client.force_login(user)
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    payload = message_payload(reply)
    assert payload["bubble"] in page, "a bubble the socket adds is the one the page renders"
    assert payload["display"]["stats"] == "12 tokens · 12.0 tok/s · first token 200 ms"
    assert payload["display"]["context"] == "1 earlier message left out to fit the model's context"
    assert "<strong>Hi</strong>" in page and "&lt;b&gt;there&lt;/b&gt;" in page
    assert "<b>" not in payload["bubble"], "model output is never raw HTML"


def test_a_screen_reader_hears_how_a_reply_ended_and_its_first_words_as_read(conversation):
    def announcement(content: str, status: MessageStatus, error: str = "") -> str:
        reply = Message.objects.create(
            conversation=conversation, role=Role.ASSISTANT, content=content, status=status, error=error
        )
        return message_payload(reply)["display"]["announcement"]

    assert announcement("**Hi** there, `you` & <b>me</b>.", MessageStatus.DONE) == (
        "Reply finished: Hi there, you & <b>me</b>."  # the words as shown, not the Markdown
    )
    long = " ".join(f"w{n}" for n in range(40))
    assert announcement(long, MessageStatus.STOPPED) == "Reply stopped: " + " ".join(long.split()[:25]) + "…"
    assert announcement("Once", MessageStatus.FAILED, "The model stopped.") == (
        "Reply failed (The model stopped.): Once"
    )
    assert announcement("", MessageStatus.FAILED) == "Reply failed"
    assert announcement("Hal", MessageStatus.STREAMING) == "", "nothing is said while it is written"
    question = Message.objects.create(conversation=conversation, role=Role.USER, content="Hi")
    assert message_payload(question)["display"]["announcement"] == ""


def test_the_model_picked_last_is_remembered(user, local_model, conversation):
    services.message_send(conversation=conversation, content="Hi", model_id=local_model.model_id)
    user.refresh_from_db()
    assert user.default_model == local_model.model_id


def test_old_turns_are_left_out_to_fit_the_context_and_the_newest_always_stays(conversation, local_model):
    for i in range(30):
        _exchange(conversation, f"Question {i}: " + "words " * 60, f"Answer {i}: " + "words " * 60)
    _, reply = services.message_send(conversation=conversation, content="The newest question")
    provider = provider_for(model_resolve(reply.model))
    prompt = services.prompt_build(reply=reply, provider=provider, context_length=1024, max_tokens=256)
    assert prompt.omitted > 0
    assert prompt.turns[-1].content == "The newest question"
    used = sum(provider.token_counts([t.content for t in prompt.turns])) + TURN_OVERHEAD_TOKENS * len(
        prompt.turns
    )
    assert used <= 1024 - 256
    assert len(prompt.turns) + prompt.omitted == 61


def test_a_trimmed_reply_says_how_many_messages_were_left_out(conversation, settings):
    settings.CHAT_MAX_TOKENS = 8
    settings.LLAMA_CONTEXT = 512
    for i in range(20):
        _exchange(conversation, f"Question {i}: " + "words " * 40, f"Answer {i}")
    _, reply = services.message_send(conversation=conversation, content="Last one")
    services.reply_generate(message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    assert reply.omitted_turns > 0


def test_a_persona_an_admin_shared_is_no_longer_its_makers_to_rewrite(client, user, other_user):
    from django.urls import reverse

    persona = Persona.objects.create(owner=user, name="Tutor", system_prompt="Teach gently.", is_shared=True)
    client.force_login(user)
    edited = client.post(
        reverse("chat:persona_edit", args=[persona.pk]), {"name": "Tutor", "system_prompt": "Be rude."}
    )
    deleted = client.post(reverse("chat:persona_delete", args=[persona.pk]))
    assert edited.status_code == 404 and deleted.status_code == 404
    persona.refresh_from_db()
    assert persona.system_prompt == "Teach gently." and persona.is_shared
    page = client.get(reverse("chat:personas")).content.decode()
    assert "Tutor" in page and reverse("chat:persona_edit", args=[persona.pk]) not in page

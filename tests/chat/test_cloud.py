"""Cloud replies through the real openai SDK, against real servers on loopback."""

import logging
import threading

import pytest
from django.db.backends.signals import connection_created

from accounts.models import InstanceSettings
from chat import services
from chat.models import CloudModel, CloudProvider, Message, MessageStatus
from chat.providers.registry import models_offered
from localai_site.core import crypto
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import tasks_wait_idle
from tests.chat.conftest import make_cloud_provider
from tests.servers import API_KEY, LLAMA_ALIAS, free_port

pytestmark = pytest.mark.django_db


def _reply_from(conversation, model_id, content="Say hello in three words."):
    _, reply = services.message_send(conversation=conversation, content=content, model_id=model_id)
    services.reply_generate(message_id=reply.pk)
    reply.refresh_from_db()
    return reply


def _cloud_conversation(user, model_id):
    return services.conversation_create(owner=user, model_id=model_id)


def test_a_cloud_reply_streams_through_the_openai_sdk_and_records_who_received_it(
    user, loopback_provider, short_replies
):
    model_id = f"cloud:loopback/{LLAMA_ALIAS}"
    conversation = _cloud_conversation(user, model_id)
    reply = _reply_from(conversation, model_id)
    assert reply.status == MessageStatus.DONE, reply.error
    assert reply.content.strip()
    assert reply.provider == "loopback" and reply.model == model_id
    assert 0 < reply.completion_tokens <= short_replies.CHAT_MAX_TOKENS
    user_message = conversation.messages.get(role="user")
    assert user_message.provider == "loopback", "the access report needs who received the user's words"


@pytest.mark.django_db(transaction=True)  # the reply is written after the send commits
def test_the_thread_writing_a_reply_opens_no_database_connection(user, loopback_provider, short_replies):
    """A cloud worker writes hundreds of replies at once, a thread each, and PostgreSQL allows
    100 connections: a reply's reads and writes, the bubbles it is shown in included, go
    through the few reply database threads (``chat.streaming.reply_database``)."""
    opened_on: list[str] = []

    def opened(sender, connection, **kwargs) -> None:
        opened_on.append(threading.current_thread().name)

    model_id = f"cloud:loopback/{LLAMA_ALIAS}"
    conversation = _cloud_conversation(user, model_id)
    connection_created.connect(opened)
    try:
        _, reply = services.message_send(conversation=conversation, content="Say hello.", model_id=model_id)
        tasks_wait_idle(Queue.CLOUD, timeout=120)
    finally:
        connection_created.disconnect(opened)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.DONE, reply.error
    assert set(opened_on) <= {threading.current_thread().name, "localai-reply-db"}


def test_discovery_lists_the_providers_models_disabled_until_an_admin_enables_them(db, llama_server):
    provider = make_cloud_provider("found", llama_server.base_url, API_KEY)
    assert services.cloud_models_discover(provider=provider) == 1
    model = CloudModel.objects.get(provider=provider)
    assert (model.name, model.enabled) == (LLAMA_ALIAS, False)
    assert services.cloud_models_discover(provider=provider) == 0  # nothing new the second time
    assert models_offered(include_cloud=True)[1] == []


def test_the_api_key_is_stored_encrypted_and_only_hinted(db):
    provider = make_cloud_provider("keyed", "http://127.0.0.1:1/v1", API_KEY)
    stored = CloudProvider.objects.get(pk=provider.pk)
    assert API_KEY not in stored.api_key_encrypted
    assert crypto.secret_decrypt(stored.api_key_encrypted) == API_KEY
    assert stored.api_key_hint == "…" + API_KEY[-4:]
    services.cloud_provider_save(provider=stored, api_key="")  # an empty field keeps the key
    assert crypto.secret_decrypt(CloudProvider.objects.get(pk=provider.pk).api_key_encrypted) == API_KEY


def test_rotating_the_encryption_key_keeps_keys_readable(db, settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    provider = make_cloud_provider("rotated", "http://127.0.0.1:1/v1", API_KEY)
    settings.ENCRYPTION_KEYS = [new, old]
    assert crypto.secrets_rotate() == 1
    settings.ENCRYPTION_KEYS = [new]
    assert crypto.secret_decrypt(CloudProvider.objects.get(pk=provider.pk).api_key_encrypted) == API_KEY


def test_a_refused_key_ends_the_reply_with_a_clear_message_and_never_logs_the_key(
    user, llama_server, short_replies, caplog
):
    make_cloud_provider("wrongkey", llama_server.base_url, "sk-wrong-key-9876543210", LLAMA_ALIAS)
    model_id = f"cloud:wrongkey/{LLAMA_ALIAS}"
    with caplog.at_level(logging.DEBUG):
        reply = _reply_from(_cloud_conversation(user, model_id), model_id)
    assert reply.status == MessageStatus.FAILED
    assert "refused the API key" in reply.error
    assert "sk-wrong-key" not in caplog.text and "sk-wrong-key" not in reply.error


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("rate-limited", "limiting requests"),
        ("server-error", "HTTP 500"),
        ("slow", "did not answer in time"),
    ],
)
def test_provider_errors_end_the_reply_with_a_clear_message(
    user, misbehaving_server, settings, model, expected
):
    settings.CLOUD_TIMEOUT_S = 1
    make_cloud_provider("flaky", misbehaving_server.base_url, "sk-anything-12345", model)
    model_id = f"cloud:flaky/{model}"
    reply = _reply_from(_cloud_conversation(user, model_id), model_id)
    assert reply.status == MessageStatus.FAILED
    assert expected in reply.error


def test_a_stream_that_breaks_off_keeps_the_text_received(user, misbehaving_server):
    make_cloud_provider("flaky", misbehaving_server.base_url, "sk-anything-12345", "drops")
    model_id = "cloud:flaky/drops"
    reply = _reply_from(_cloud_conversation(user, model_id), model_id)
    assert reply.status == MessageStatus.FAILED
    assert reply.content == "w0 w1 "
    assert "broke off" in reply.error


def test_only_connection_failures_are_retried(user, settings):
    settings.CLOUD_CONNECT_ATTEMPTS = 2
    make_cloud_provider("gone", f"http://127.0.0.1:{free_port()}/v1", "sk-anything-12345", "m")
    reply = _reply_from(_cloud_conversation(user, "cloud:gone/m"), "cloud:gone/m")
    assert reply.status == MessageStatus.FAILED
    assert "Could not reach" in reply.error


def test_a_conversation_that_used_a_local_model_never_switches_to_the_cloud(conversation, loopback_provider):
    services.message_send(conversation=conversation, content="A private thought.")
    Message.objects.filter(conversation=conversation).update(status=MessageStatus.DONE)
    with pytest.raises(Refusal) as error:
        services.message_send(
            conversation=conversation, content="Now ask the cloud", model_id=f"cloud:loopback/{LLAMA_ALIAS}"
        )
    assert error.value.code == "stays_local"
    assert "new chat" in error.value.message
    assert not conversation.messages.exclude(provider="local").exists()


def test_the_instance_switch_turns_cloud_providers_off(user, loopback_provider):
    InstanceSettings.objects.update_or_create(pk=1, defaults={"cloud_enabled": False})
    with pytest.raises(Refusal) as error:
        _cloud_conversation(user, f"cloud:loopback/{LLAMA_ALIAS}")
    assert error.value.code == "cloud_off"


def test_a_local_only_account_cannot_use_cloud_models(user, loopback_provider):
    user.local_only = True
    user.save()
    with pytest.raises(Refusal) as error:
        _cloud_conversation(user, f"cloud:loopback/{LLAMA_ALIAS}")
    assert error.value.code == "local_only"


def test_a_disabled_cloud_model_is_refused(user, loopback_provider):
    CloudModel.objects.update(enabled=False)
    with pytest.raises(Refusal) as error:
        _cloud_conversation(user, f"cloud:loopback/{LLAMA_ALIAS}")
    assert error.value.code == "unknown_model"

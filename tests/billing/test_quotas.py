"""Plans' limits, checked where a reply is started or a file taken, in the same transaction."""

import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from billing.models import Subscription, UsageCounter, UsageKind
from billing.selectors import usage_window
from billing.services import plan_assign, quota_spend
from chat import services
from chat.models import Message, MessageStatus, Role
from localai_site.core.refusals import Refusal
from tests.chat.conftest import make_cloud_provider
from tests.chat.socket_client import open_socket, session_cookie_for
from tests.files import uploaded

CLOUD_MODEL = "cloud:metered/m"


@pytest.fixture
def cloud_model(db):
    # Nowhere to connect: these tests start replies, and none is generated in them.
    make_cloud_provider("metered", "http://127.0.0.1:9/v1", "sk-anything-12345", "m")
    return CLOUD_MODEL


def _send(user, model_id=CLOUD_MODEL):
    conversation = services.conversation_create(owner=user, model_id=model_id)
    _, reply = services.message_send(conversation=conversation, content="Hello", model_id=model_id)
    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.DONE)  # as if written
    return conversation


@pytest.mark.django_db
def test_the_last_message_of_the_day_is_refused_with_the_reset_time_and_the_upgrade(
    user, plans, cloud_model, billing_on, settings
):
    settings.TIME_ZONE = "Europe/Paris"
    plans["free"].cloud_messages_per_day = 2
    plans["free"].save()
    _send(user)
    conversation = _send(user)
    with pytest.raises(Refusal) as refused:
        services.reply_regenerate(conversation=conversation, message_id=conversation.messages.last().pk)
    with pytest.raises(Refusal) as refused_send:
        _send(user)
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert refused.value.code == refused_send.value.code == "quota_exceeded"
    assert refused.value.message == (
        "You have used all 2 messages of your Free plan for this day. They reset at 00:00 on "
        f"{tomorrow:%A} {tomorrow.day} {tomorrow:%B %Y} (Europe/Paris). "
        "For more, upgrade to AI Chat Pro or AI Art Pro on your plan page (/billing/)."
    )
    # Nothing of the refused sends was kept, and the regenerated reply is still there.
    assert Message.objects.filter(conversation__owner=user, role=Role.USER).count() == 2
    assert conversation.messages.filter(role=Role.ASSISTANT).count() == 1


@pytest.mark.django_db
def test_a_new_day_gives_a_new_allowance_and_the_meter_says_when(client, user, plans, cloud_model):
    plans["free"].cloud_messages_per_day = 1
    plans["free"].save()
    yesterday, _ = usage_window(
        kind=UsageKind.CLOUD_MESSAGE, subscription=None, now=timezone.now() - timedelta(days=1)
    )
    UsageCounter.objects.create(user=user, kind=UsageKind.CLOUD_MESSAGE, window_start=yesterday, used=1)
    _send(user)  # yesterday's full allowance does not count today
    client.force_login(user)
    page = client.get(reverse("billing:plan")).content.decode()
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    assert 'class="meter-used">1<' in page and 'class="meter-limit">1<' in page
    assert f"resets {midnight:%-d %B %Y}, 00:00" in page


@pytest.mark.django_db
def test_local_models_are_not_counted_unless_the_plan_limits_them(user, plans, conversation):
    plans["free"].cloud_messages_per_day = 0
    plans["free"].save()
    services.message_send(conversation=conversation, content="Hello")  # local: free of charge
    Message.objects.filter(role=Role.ASSISTANT).update(status=MessageStatus.DONE)
    plans["free"].local_limited = True
    plans["free"].save()
    with pytest.raises(Refusal, match="used all 0 messages"):
        services.message_send(conversation=conversation, content="Again")


@pytest.mark.django_db
def test_a_plan_offers_only_its_cloud_models(user, plans, cloud_model):
    plans["free"].cloud_models = "cloud:metered/other"
    plans["free"].save()
    plans["ai-chat-pro"].cloud_models = CLOUD_MODEL
    plans["ai-chat-pro"].save()
    with pytest.raises(Refusal) as refused:
        _send(user)
    assert refused.value.code == "plan_model"
    assert refused.value.message == (
        "That model is not part of the Free plan. An admin can move you to AI Chat Pro or AI Art Pro."
    )  # Art Pro lists no models: it has them all
    plan_assign(user=user, plan=plans["ai-chat-pro"])
    _send(user)


@pytest.mark.django_db
def test_the_upload_limit_is_the_plans(user, plans, settings):
    plans["free"].max_upload_mb = 1
    plans["free"].save()
    with pytest.raises(Refusal, match="files up to 1.0\xa0MB can be uploaded"):
        services.upload_save(owner=user, conversation=None, file=uploaded("big.txt", b"a" * 1_500_000))
    plan_assign(user=user, plan=plans["ai-chat-pro"])  # no limit of its own: the instance's
    assert services.upload_save(owner=user, conversation=None, file=uploaded("big.txt", b"a" * 1_500_000))


@pytest.mark.django_db
def test_images_are_counted_per_billing_period(user, plans):
    plans["ai-art-pro"].image_generations_per_month = 1
    plans["ai-art-pro"].save()
    subscription = plan_assign(user=user, plan=plans["ai-art-pro"])
    start = timezone.now() - timedelta(days=3)
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=start, current_period_end=start + timedelta(days=30)
    )
    quota_spend(user=user, kind=UsageKind.IMAGE)
    with pytest.raises(Refusal, match="used all 1 image generations of your AI Art Pro plan for this period"):
        quota_spend(user=user, kind=UsageKind.IMAGE)
    assert UsageCounter.objects.get(user=user, kind=UsageKind.IMAGE).window_start == start


@pytest.mark.django_db
def test_with_billing_off_an_admin_assigns_the_plan_and_its_limits_hold(
    client, admin, user, plans, cloud_model, settings
):
    settings.BILLING_ENABLED = False
    plans["free"].cloud_messages_per_day = 1
    plans["free"].save()
    _send(user)
    with pytest.raises(Refusal, match="An admin can move you to AI Chat Pro or AI Art Pro"):
        _send(user)
    client.force_login(admin)
    response = client.post(
        reverse("admin:billing_subscription_add"), {"user": user.pk, "plan": plans["ai-chat-pro"].pk}
    )
    assert response.status_code == 302
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan.name == "AI Chat Pro" and subscription.assigned_by_admin
    listing = client.get(reverse("admin:billing_subscription_changelist")).content.decode()
    assert "AI Chat Pro" in listing and "Cloud messages today: 1/500" in listing
    _send(user)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_tabs_sending_at_once_cannot_both_spend_the_last_message(user, plans, cloud_model, settings):
    settings.CLOUD_CONNECT_ATTEMPTS = 1
    plans["free"].cloud_messages_per_day = 1
    plans["free"].save()
    conversations = [services.conversation_create(owner=user, model_id=CLOUD_MODEL) for _ in range(2)]
    start = threading.Barrier(2)
    outcomes = []

    def send(conversation):
        start.wait()
        try:
            services.message_send(conversation=conversation, content="Mine", model_id=CLOUD_MODEL)
            outcomes.append("sent")
        except Refusal as refusal:
            outcomes.append(refusal.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(c,)) for c in conversations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["quota_exceeded", "sent"]
    assert Message.objects.filter(role=Role.USER).count() == 1
    assert UsageCounter.objects.get(user=user).used == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_chat_socket_answers_a_spent_allowance_with_an_error_frame(user, plans, conversation):
    free = plans["free"]
    free.cloud_messages_per_day, free.local_limited = 0, True
    await database_sync_to_async(free.save)()
    socket = await open_socket(conversation.pk, await database_sync_to_async(session_cookie_for)(user))
    await socket.send({"type": "send", "content": "One more?"})
    answer = await socket.receive(timeout=10)
    assert (answer["type"], answer["code"]) == ("error", "quota_exceeded")
    assert "used all 0 messages of your Free plan" in answer["error"]
    assert await database_sync_to_async(Message.objects.count)() == 0
    await socket.close()

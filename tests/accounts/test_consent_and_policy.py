"""Consent as people give and withdraw it, Global Privacy Control, the age check and the policy."""

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import (
    Consent,
    ConsentPurpose,
    ConsentSource,
    DataSubjectRequest,
    InstanceSettings,
    PolicyVersion,
    RequestKind,
    UsageEvent,
    User,
)
from chat.services import message_send
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

GPC = {"HTTP_SEC_GPC": "1"}


def _signup(client, email="new@example.com", headers=None, **fields):
    data = {"email": email, "password1": PASSWORD, "password2": PASSWORD, **fields}
    return client.post(reverse("account_signup"), data, **(headers or {}))


def _decisions(user, purpose):
    return [(c.given, c.source) for c in Consent.objects.filter(user=user, purpose=purpose).order_by("pk")]


def test_signup_asks_for_the_instance_minimum_age_and_refuses_without_it(client, admin):
    InstanceSettings.objects.update_or_create(pk=1, defaults={"minimum_age": 13})
    page = client.get(reverse("account_signup")).content.decode()
    assert "I am at least 13 years old" in page

    response = _signup(client)
    assert response.status_code == 200
    assert "You must be at least 13" in response.content.decode()
    assert not User.objects.filter(email="new@example.com").exists()


def test_signup_records_the_age_the_policy_read_and_analytics_only_when_ticked(client, admin):
    _signup(client, "yes@example.com", minimum_age="on", analytics="on")
    yes = User.objects.get(email="yes@example.com")
    assert yes.analytics_enabled
    assert _decisions(yes, ConsentPurpose.ANALYTICS) == [(True, ConsentSource.SIGNUP)]
    assert Consent.objects.get(user=yes, purpose=ConsentPurpose.MINIMUM_AGE).version == "16"
    assert Consent.objects.get(user=yes, purpose=ConsentPurpose.PRIVACY_POLICY).version == "default"

    client.logout()
    _signup(client, "no@example.com", minimum_age="on")
    no = User.objects.get(email="no@example.com")
    assert not no.analytics_enabled
    assert _decisions(no, ConsentPurpose.ANALYTICS) == []


def test_a_browser_sending_gpc_is_not_offered_analytics_at_signup(client, admin):
    assert 'name="analytics"' in client.get(reverse("account_signup")).content.decode()
    assert 'name="analytics"' not in client.get(reverse("account_signup"), **GPC).content.decode()
    _signup(client, headers=GPC, minimum_age="on", analytics="on")  # a crafted post changes nothing
    assert not User.objects.get(email="new@example.com").analytics_enabled


def test_analytics_are_switched_on_and_off_with_one_click_each(client, user):
    client.force_login(user)
    page = client.get(reverse("accounts:privacy")).content.decode()
    assert "Analytics are off." in page and "Turn analytics on" in page

    client.post(reverse("accounts:analytics_consent"), {"given": "1"})
    user.refresh_from_db()
    assert user.analytics_enabled
    assert "Turn analytics off" in client.get(reverse("accounts:privacy")).content.decode()

    client.post(reverse("accounts:analytics_consent"), {"given": "0"})
    user.refresh_from_db()
    assert not user.analytics_enabled
    assert _decisions(user, ConsentPurpose.ANALYTICS) == [
        (True, ConsentSource.SETTINGS),
        (False, ConsentSource.SETTINGS),
    ]
    history = client.get(reverse("accounts:privacy")).content.decode()
    assert "Your choices so far (2)" in history and "withdrawn" in history


def test_gpc_withdraws_analytics_and_no_event_is_recorded_afterwards(client, user, make_conversation):
    services.consent_set(
        user=user, purpose=ConsentPurpose.ANALYTICS, given=True, source=ConsentSource.SETTINGS
    )
    message_send(conversation=make_conversation(user), content="counted")
    assert UsageEvent.objects.filter(user=user, name="message_sent").count() == 1

    client.force_login(user)
    page = client.get(reverse("accounts:privacy"), **GPC).content.decode()
    assert "Global Privacy Control" in page
    user.refresh_from_db()
    assert not user.analytics_enabled
    assert _decisions(user, ConsentPurpose.ANALYTICS)[-1] == (False, ConsentSource.GPC)

    client.post(reverse("accounts:analytics_consent"), {"given": "1"}, **GPC)
    user.refresh_from_db()
    assert not user.analytics_enabled  # the signal wins over a click in that browser

    message_send(conversation=make_conversation(user), content="not counted")
    assert UsageEvent.objects.filter(user=user, name="message_sent").count() == 1


def test_a_consent_withdrawal_request_is_carried_out_by_an_admin(user, make_user):
    admin = make_user("dpo@example.com", is_staff=True, is_superuser=True)
    services.consent_set(
        user=user, purpose=ConsentPurpose.ANALYTICS, given=True, source=ConsentSource.SETTINGS
    )
    request = services.data_request_save(
        request=DataSubjectRequest(kind=RequestKind.CONSENT_WITHDRAWAL, subject=user)
    )
    services.data_request_carry_out(request=request, actor=admin)
    user.refresh_from_db()
    assert not user.analytics_enabled
    assert _decisions(user, ConsentPurpose.ANALYTICS)[-1] == (False, ConsentSource.DATA_REQUEST)


def test_the_built_in_policy_states_this_instances_own_settings(client, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "crash_reports": 30}
    InstanceSettings.objects.update_or_create(pk=1, defaults={"minimum_age": 13})
    page = client.get(reverse("policy:show")).content.decode()
    assert "at least 13 years old" in page
    assert "<td>Crash reports</td>\n<td>30 days</td>" in page
    assert "built-in notice" in page


def _publish(client, admin, body, significant, summary=""):
    client.force_login(admin)
    data = {"body": body, "summary": summary, **({"significant": "on"} if significant else {})}
    response = client.post(reverse("admin:accounts_policyversion_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return PolicyVersion.objects.order_by("-version").first()


def test_a_significant_new_policy_is_put_before_people_on_their_next_visit(client, user, make_user):
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    first = _publish(client, admin, "## Version one\nWe keep little.", significant=False)
    assert first.version == 1
    client.force_login(user)
    assert client.get(reverse("chat:home")).status_code == 200  # not significant: no interruption

    second = _publish(client, admin, "## Version two\nNow with analytics.", True, summary="Analytics added.")
    assert second.version == 2
    client.force_login(user)
    home = client.get(reverse("chat:home"))
    assert home.status_code == 302 and home.url.startswith(reverse("policy:review"))
    review = client.get(home.url).content.decode()
    assert "Analytics added." in review and "Now with analytics." in review
    # Rights never wait for the review.
    assert client.get(reverse("accounts:privacy")).status_code == 200

    after = client.post(home.url, {"next": "/"})
    assert after.status_code == 302 and after.url == "/"
    assert client.get(reverse("chat:home")).status_code == 200
    assert Consent.objects.filter(
        user=user, purpose=ConsentPurpose.PRIVACY_POLICY, version="policy-2"
    ).exists()


def test_the_policy_page_shows_the_current_version_its_date_and_every_older_one(client, make_user):
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    _publish(client, admin, "First text.", significant=False)
    _publish(client, admin, "Second text.", significant=False, summary="Clearer wording.")
    client.logout()
    page = client.get(reverse("policy:show")).content.decode()
    assert "Second text." in page and "Version 2 · Last updated" in page and "Clearer wording." in page
    old = client.get(reverse("policy:version", args=[1])).content.decode()
    assert "First text." in old and "an older version" in old


def test_a_published_policy_cannot_be_edited_or_deleted(client, make_user):
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    policy = _publish(client, admin, "Text.", significant=False)
    client.post(reverse("admin:accounts_policyversion_change", args=[policy.pk]), {"body": "Changed."})
    policy.refresh_from_db()
    assert policy.body == "Text."
    delete = client.get(reverse("admin:accounts_policyversion_delete", args=[policy.pk]))
    assert delete.status_code == 403


def test_the_review_page_does_not_send_people_to_another_site(client, user, make_user):
    admin = make_user("admin@example.com", is_staff=True, is_superuser=True)
    _publish(client, admin, "Text.", significant=True)
    client.force_login(user)
    response = client.post(reverse("policy:review"), {"next": "https://evil.example/"})
    assert response.url == reverse("chat:home")

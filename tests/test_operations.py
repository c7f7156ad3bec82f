"""Admin → Operations and the people actions a team operator uses: what staff see there, by
their permissions, and that it names nobody."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts.models import CrashReport, CrashSource, DataSubjectRequest, Invitation, RequestKind
from accounts.services import data_request_save
from billing.models import Plan, Subscription
from chat.models import Message, MessageStatus, Role

pytestmark = pytest.mark.django_db

PAGE = "/admin/operations/"


@pytest.fixture
def busy_instance(make_user, make_conversation):
    person = make_user("ann.secret@example.com", display_name="Ann Secret")
    conversation = make_conversation(person, title="Trip to Lisbon")
    Message.objects.create(
        conversation=conversation, role=Role.USER, content="Where in Lisbon?", status=MessageStatus.DONE
    )
    Message.objects.create(conversation=conversation, role=Role.ASSISTANT, status=MessageStatus.STREAMING)
    for status, provider in [(MessageStatus.DONE, "local"), (MessageStatus.FAILED, "acme")]:
        Message.objects.create(
            conversation=conversation, role=Role.ASSISTANT, status=status, provider=provider,
            content="Belém", finished_at=timezone.now() - timedelta(hours=1),
        )  # fmt: skip
    CrashReport.objects.create(
        source=CrashSource.WEB, logger="django.request", exception_type="builtins.KeyError", message="k",
        traceback="Traceback", fingerprint="2" * 40, release="test", count=4,
    )  # fmt: skip
    data_request_save(request=DataSubjectRequest(kind=RequestKind.ERASURE, subject=person))
    Invitation.objects.create(email="friend@example.com")
    Plan.objects.create(name="Team", slug="team")
    return person


def test_an_admin_sees_replies_queues_workers_chart_crashes_requests_and_people(client, admin, busy_instance):
    client.force_login(admin)
    page = client.get(PAGE).content.decode()

    assert "<strong>1</strong>being written by local models" in page
    assert '<th scope="row">exports</th><td>0</td><td>1</td>' in page  # embedded: this process serves it
    assert f"{socket.gethostname()}:{os.getpid()}" in page
    assert 'class="bar-local"' in page and 'class="bar-failed"' in page  # yesterday's or today's column
    assert "builtins.KeyError</a> · 4×" in page
    assert "1 open" in page and "Erasure (GDPR art. 17)" in page
    assert "2 active, 0 deactivated, 1 invitation not used yet." in page
    assert "Team: 0" in page
    assert 'href="/admin/accounts/invitation/add/"' in page
    for personal in ("ann.secret", "Ann Secret", "Lisbon", "Belém", "friend@example.com"):
        assert personal not in page


def test_staff_without_permissions_see_the_machine_but_no_people_requests_or_crashes(
    client, make_user, busy_instance
):
    client.force_login(make_user("staff@example.com", is_staff=True))
    page = client.get(PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Replies in progress" in text and "Workers and loaded models" in text
    assert "Crash reports" not in text and "Data requests" not in text and "<h2>People</h2>" not in text


def test_the_page_is_for_staff_only(client, user):
    client.force_login(user)
    assert client.get(PAGE).status_code == 302  # to the admin's sign-in


def _act(client, action: str, *people, **fields):
    return client.post(
        "/admin/accounts/user/",
        {"action": action, "_selected_action": [p.pk for p in people], "confirmed": "yes", **fields},
        follow=True,
    )


def test_deactivating_signs_a_person_out_and_reactivating_lets_them_back(client, admin, user):
    person_client = client.__class__()
    person_client.force_login(user)
    assert person_client.get("/").status_code == 200
    client.force_login(admin)

    page = _act(client, "deactivate", user).content.decode()
    assert f"{user.email} is deactivated." in page.lower()  # the admin capitalises messages
    user.refresh_from_db()
    assert not user.is_active
    assert person_client.get("/").status_code == 302  # signed out

    _act(client, "reactivate", user)
    user.refresh_from_db()
    assert user.is_active


def test_an_admin_cannot_deactivate_themselves_and_staff_no_superuser(client, admin, make_user):
    client.force_login(admin)
    page = _act(client, "deactivate", admin).content.decode()
    assert "You cannot deactivate your own account." in page
    admin.refresh_from_db()
    assert admin.is_active

    staff = make_user("staff@example.com", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user"]))
    client.force_login(staff)
    page = _act(client, "deactivate", admin).content.decode()
    assert "Only a superuser can deactivate a superuser." in page


def test_change_plan_asks_which_then_assigns_it_to_each_person(client, admin, user, other_user):
    team = Plan.objects.create(name="Team", slug="team")
    client.force_login(admin)

    form = client.post(
        "/admin/accounts/user/", {"action": "change_plan", "_selected_action": [user.pk, other_user.pk]}
    ).content.decode()
    assert f'<option value="{team.pk}">Team</option>' in form and user.email in form

    page = _act(client, "change_plan", user, other_user, plan=str(team.pk)).content.decode()
    assert "2 now on Team." in page
    assert set(
        Subscription.objects.filter(plan=team, assigned_by_admin=True).values_list("user", flat=True)
    ) == {
        user.pk,
        other_user.pk,
    }
    listing = client.get("/admin/accounts/user/").content.decode()
    assert "Team" in listing and "default plan" in listing  # the admin's own row

    _act(client, "change_plan", user, plan="default")
    assert Subscription.objects.get(user=user).plan is None

    assert "Choose one of the plans." in _act(client, "change_plan", user, plan="nine").content.decode()

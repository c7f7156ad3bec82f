"""Data-subject rights as people and admins use them: Settings → Privacy and the admin."""

import zipfile
from datetime import datetime, timedelta
from io import BytesIO

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import (
    DataSubjectRequest,
    ExportArchive,
    ExportStatus,
    Regime,
    RequestKind,
    RequestStatus,
    User,
)
from accounts.retention import retention_enforce
from chat.models import ACTIVE_STATUSES, Conversation, Message, Role
from chat.services import message_send
from localai_site.core.refusals import Refusal
from tests.conftest import PASSWORD
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


def _status_when_done(client, archive) -> dict:
    """Polls like the privacy page does while the export is built in the background."""

    def finished() -> dict | None:
        status = client.get(reverse("accounts:export_status", args=[archive.pk])).json()
        return status if status["status"] in ("ready", "failed") else None

    return wait_until(finished, what=f"export {archive.pk} to be ready or failed")


def _archive_of(client, user) -> zipfile.ZipFile:
    archive = ExportArchive.objects.get(user=user)
    status = _status_when_done(client, archive)
    assert status["status"] == "ready" and status["progress"] == 100
    response = client.get(status["download_url"])
    assert response["Content-Disposition"].startswith("attachment")
    return zipfile.ZipFile(BytesIO(b"".join(response.streaming_content)))


@pytest.mark.django_db(transaction=True)
def test_a_person_downloads_their_data_through_a_private_link(client, user, other_user, conversation):
    Message.objects.create(conversation=conversation, role=Role.USER, content="my secret plan")
    client.force_login(user)
    client.post(reverse("accounts:export_start"))
    archive = _archive_of(client, user)
    assert "my secret plan" in archive.read("messages.json").decode()
    token = ExportArchive.objects.get(user=user).token
    client.force_login(other_user)
    assert client.get(reverse("accounts:export_download", args=[token])).status_code == 404
    page = client.get(reverse("accounts:privacy")).content.decode()
    assert "Prepare a new download" in page and token not in page


@pytest.mark.django_db(transaction=True)
def test_an_expired_link_no_longer_downloads_and_old_archives_are_purged(client, user):
    client.force_login(user)
    client.post(reverse("accounts:export_start"))
    archive = ExportArchive.objects.get(user=user)
    assert _status_when_done(client, archive)["status"] == "ready"
    archive.refresh_from_db()
    assert archive.expires_at - timezone.now() > timedelta(days=6, hours=23)
    ExportArchive.objects.filter(pk=archive.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(reverse("accounts:export_download", args=[archive.token])).status_code == 404
    path = archive.file.path
    assert retention_enforce()["export_archives"] == 1
    assert not ExportArchive.objects.exists()
    import os

    assert not os.path.exists(path)


def test_one_export_at_a_time_and_a_few_a_day_but_admins_answering_a_request_are_not_held(
    client, user, make_user, settings
):
    settings.EXPORTS_PER_DAY = 2
    # Nothing is committed in this test, so no export is built: each stays queued until marked.
    services.export_request(user=user)
    with pytest.raises(Refusal) as error:
        services.export_request(user=user)
    assert error.value.code == "export_in_progress"
    ExportArchive.objects.update(status=ExportStatus.READY)
    services.export_request(user=user)
    ExportArchive.objects.update(status=ExportStatus.FAILED)
    with pytest.raises(Refusal) as error:
        services.export_request(user=user)
    assert error.value.code == "too_many_exports"
    assert "2 downloads a day; you can ask for another in 23" in error.value.message
    client.force_login(user)
    page = client.post(reverse("accounts:export_start"), follow=True).content.decode()
    assert "2 downloads a day" in page and "is being prepared" not in page
    assert ExportArchive.objects.count() == 2
    dpo = make_user("dpo@example.com", is_staff=True)
    services.export_request(user=user, requested_by=dpo)
    assert ExportArchive.objects.count() == 3


def test_an_export_whose_worker_died_does_not_block_the_next(user):
    services.export_request(user=user)
    ExportArchive.objects.update(created_at=timezone.now() - timedelta(hours=2))
    services.export_request(user=user)
    assert ExportArchive.objects.count() == 2


def test_the_privacy_page_shows_who_received_what(client, user, conversation):
    Message.objects.create(conversation=conversation, role=Role.USER, content="hi", provider="local")
    cloud = Conversation.objects.create(owner=user, model="cloud:openai/x", provider="openai")
    Message.objects.create(conversation=cloud, role=Role.USER, content="hello", provider="openai")
    client.force_login(user)
    page = client.get(reverse("accounts:privacy")).content.decode()
    assert "this instance" in page and "openai" in page


def test_clearing_local_history_keeps_cloud_history_and_the_reverse(client, user, conversation):
    cloud = Conversation.objects.create(owner=user, model="cloud:openai/x", provider="openai")
    client.force_login(user)
    client.post(reverse("chat:history_clear"), {"scope": "local"})
    assert list(Conversation.objects.filter(owner=user)) == [cloud]
    client.post(reverse("chat:history_clear"), {"scope": "cloud"})
    assert not Conversation.objects.filter(owner=user).exists()


def test_deleting_ones_account_needs_the_password_and_the_typed_word(client, user, conversation):
    client.force_login(user)
    url = reverse("accounts:account_delete")
    assert b"not your password" in client.post(url, {"password": "wrong", "confirmation": "DELETE"}).content
    assert b"to confirm" in client.post(url, {"password": PASSWORD, "confirmation": "delete me"}).content
    assert User.objects.filter(pk=user.pk).exists()
    response = client.post(url, {"password": PASSWORD, "confirmation": "DELETE"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists() and not Conversation.objects.exists()
    assert client.get(reverse("chat:home")).status_code == 302  # signed out


@pytest.mark.django_db(transaction=True)
def test_a_restricted_account_can_read_and_export_but_nothing_new_is_processed(
    client, user, conversation, short_replies
):
    services.user_restrict(user=user, restricted=True)
    with pytest.raises(Refusal) as error:
        message_send(conversation=conversation, content="process this")
    assert error.value.code == "restricted"
    client.force_login(user)
    assert client.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 200
    client.post(reverse("accounts:export_start"))
    assert _status_when_done(client, ExportArchive.objects.get(user=user))["status"] == "ready"
    services.user_restrict(user=user, restricted=False)
    _, reply = message_send(conversation=conversation, content="process this")
    # Let the reply finish here: a generation outliving the test would write into the next one.
    wait_until(
        lambda: not Message.objects.filter(pk=reply.pk, status__in=ACTIVE_STATUSES).exists(),
        timeout=60,
        what="the reply to finish",
    )


@pytest.mark.parametrize(
    ("regime", "received", "due"),
    [
        (Regime.GDPR, datetime(2026, 1, 31, 9, 0), datetime(2026, 2, 28, 9, 0)),
        (Regime.GDPR, datetime(2026, 12, 15, 9, 0), datetime(2027, 1, 15, 9, 0)),
        (Regime.CCPA, datetime(2026, 3, 1, 9, 0), datetime(2026, 4, 15, 9, 0)),
    ],
)
def test_requests_get_the_deadline_the_law_sets(user, regime, received, due):
    tz = timezone.get_current_timezone()
    request = services.data_request_save(
        request=DataSubjectRequest(
            kind=RequestKind.ACCESS, regime=regime, subject=user, received_at=received.replace(tzinfo=tz)
        )
    )
    assert request.due_at == due.replace(tzinfo=tz)
    assert request.subject_email == user.email and request.subject_reference


def test_a_finished_erasure_request_survives_the_erasure_without_naming_the_person(user, make_user):
    admin = make_user("dpo@example.com", is_staff=True)
    request = services.data_request_save(request=DataSubjectRequest(kind=RequestKind.ERASURE, subject=user))
    reference = request.subject_reference
    services.data_request_carry_out(request=request, actor=admin)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED and request.handled_by == admin
    assert request.subject is None and request.subject_email == "" and request.subject_reference == reference
    assert request.outcome["erased"]["accounts.User"] == 1
    assert "ann" not in str(request.outcome).lower()
    assert not User.objects.filter(email="ann@example.com").exists()


def _admin_post(client, model: str, action: str, ids, confirmed: bool):
    data = {"action": action, "_selected_action": [str(i) for i in ids]}
    if confirmed:
        data["confirmed"] = "yes"
    return client.post(reverse(f"admin:accounts_{model}_changelist"), data)


def test_admin_erasure_asks_first_and_needs_the_permission(client, user, make_user):
    staff = make_user("staff@example.com", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_user"), Permission.objects.get(codename="change_user")
    )
    client.force_login(staff)
    response = _admin_post(client, "user", "erase_data", [user.pk], confirmed=True)
    assert User.objects.filter(pk=user.pk).exists(), "staff without the permission cannot erase"
    assert response.status_code in (200, 302)

    staff.user_permissions.add(Permission.objects.get(codename="handle_data_requests"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    page = _admin_post(client, "user", "erase_data", [user.pk], confirmed=False)
    assert b"Erase these people for good?" in page.content and User.objects.filter(pk=user.pk).exists()
    _admin_post(client, "user", "erase_data", [user.pk], confirmed=True)
    assert not User.objects.filter(pk=user.pk).exists()


def test_the_user_admin_has_no_bulk_delete(client, make_user):
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get(reverse("admin:accounts_user_changelist")).content.decode()
    assert "delete_selected" not in page and "erase_data" in page


def test_admin_restricts_and_lifts_with_confirmation(client, user, make_user):
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    _admin_post(client, "user", "restrict_processing", [user.pk], confirmed=True)
    user.refresh_from_db()
    assert user.processing_restricted
    _admin_post(client, "user", "lift_restriction", [user.pk], confirmed=True)
    user.refresh_from_db()
    assert not user.processing_restricted


def test_overdue_requests_stand_out_in_the_admin_list(client, user, make_user):
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    old = services.data_request_save(
        request=DataSubjectRequest(
            kind=RequestKind.ACCESS, subject=user, received_at=timezone.now() - timedelta(days=40)
        )
    )
    services.data_request_save(request=DataSubjectRequest(kind=RequestKind.ACCESS, subject=user))
    client.force_login(admin)
    page = client.get(reverse("admin:accounts_datasubjectrequest_changelist")).content.decode()
    assert page.count("overdue") == 1 and old.due_at.strftime("%Y-%m-%d") in page

"""Retention, first-party analytics and crash reports, as an operator relies on them."""

import asyncio
import logging
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import IntegrityError
from django.test import Client
from django.urls import path, reverse
from django.utils import timezone

from accounts import services
from accounts.models import (
    ActiveUsersDaily,
    ConsentPurpose,
    ConsentSource,
    CrashReport,
    DataSubjectRequest,
    RequestKind,
    RequestStatus,
    UsageDaily,
    UsageEvent,
)
from accounts.retention import retention_enforce
from chat.services import conversation_create, message_send
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

SECRET_TEXT = "please summarise my divorce papers for tomorrow"
API_KEY = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e"


def _agree(user):
    services.consent_set(
        user=user, purpose=ConsentPurpose.ANALYTICS, given=True, source=ConsentSource.SETTINGS
    )


def _crash(user_email):
    raise ValueError(f"could not parse '{SECRET_TEXT}' for {user_email} with api_key={API_KEY}")


def _failing_view(request, conversation_id):
    _crash("ann@example.com")


urlpatterns = [path("c/<uuid:conversation_id>/boom/", _failing_view)]


# --- Retention ---------------------------------------------------------------------------


def test_crash_reports_last_seen_before_the_period_go_and_recent_ones_stay():
    now = timezone.now()

    def report(fingerprint, *, first_days, last_days):
        return CrashReport.objects.create(
            created_at=now - timedelta(days=first_days), last_seen_at=now - timedelta(days=last_days),
            source="web", logger="x", exception_type="E", message="", traceback="",
            fingerprint=fingerprint, release="1",
        )  # fmt: skip

    old = report("old", first_days=200, last_days=91)
    recent = report("recent", first_days=89, last_days=89)
    recurring = report("recurring", first_days=200, last_days=1)  # its text is of yesterday
    assert retention_enforce()["crash_reports"] == 1
    assert set(CrashReport.objects.all()) == {recent, recurring}
    assert not CrashReport.objects.filter(pk=old.pk).exists()


def test_answered_data_requests_are_kept_three_years_and_open_ones_always(user):
    long_ago = timezone.now() - timedelta(days=3 * 365 + 1)
    for status in (RequestStatus.COMPLETED, RequestStatus.RECEIVED):
        services.data_request_save(
            request=DataSubjectRequest(
                kind=RequestKind.ACCESS, subject=user, received_at=long_ago, status=status
            )
        )
    assert retention_enforce()["finished_data_requests"] == 1
    assert DataSubjectRequest.objects.get().status == RequestStatus.RECEIVED


def test_the_command_prints_the_table_and_what_it_removed(capsys):
    call_command("enforce_retention")
    out = capsys.readouterr().out
    assert "Crash reports" in out and "kept    90 days" in out and "removed 0" in out


def test_a_system_check_refuses_keeping_crash_reports_over_90_days(settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "crash_reports": 120}
    errors = [message for message in run_checks() if message.id == "localai.E001"]
    assert errors and "90 days at most" in errors[0].msg
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "crash_reports": 90}
    assert not [message for message in run_checks() if message.id == "localai.E001"]


# --- Analytics -------------------------------------------------------------------------


def test_events_say_what_was_used_never_what_was_written(user, make_user, local_model):
    _agree(user)
    conversation = conversation_create(owner=user)
    message_send(conversation=conversation, content=SECRET_TEXT)
    events = list(UsageEvent.objects.filter(user=user).values())
    assert [event["name"] for event in events] == ["message_sent", "conversation_created"]
    assert events[0]["model"] == local_model.model_id and events[0]["provider"] == "local"
    assert "divorce" not in str(events)

    silent = make_user("quiet@example.com")
    message_send(conversation=conversation_create(owner=silent), content="hello")
    assert not UsageEvent.objects.filter(user=silent).exists()


def test_restricted_people_are_not_counted_even_with_consent(user, local_model):
    _agree(user)
    services.user_restrict(user=user, restricted=True)
    conversation_create(owner=user)
    assert not UsageEvent.objects.exists()


def test_finished_days_become_totals_and_their_raw_events_are_deleted(user, make_user):
    other = make_user()
    yesterday = timezone.now() - timedelta(days=1)
    for person, provider in ((user, "local"), (user, "local"), (other, "openai")):
        UsageEvent.objects.create(
            user=person, name="message_sent", model=f"m-{provider}", provider=provider, created_at=yesterday
        )
    today = UsageEvent.objects.create(user=user, name="message_sent", model="m-local", provider="local")

    assert retention_enforce()["analytics_events"] == 3
    assert list(UsageEvent.objects.all()) == [today]
    local = UsageDaily.objects.get(provider="local")
    assert (local.day, local.events, local.users) == (timezone.localdate(yesterday), 2, 1)
    assert UsageDaily.objects.get(provider="openai").events == 1
    assert ActiveUsersDaily.objects.get().users == 2


def test_the_dashboard_draws_local_and_cloud_messages_for_admins_only(client, user, make_user):
    two_days_ago = timezone.localdate() - timedelta(days=2)
    UsageDaily.objects.create(
        day=two_days_ago, name="message_sent", model="local:smol", provider="local", events=7, users=2
    )
    UsageEvent.objects.create(user=user, name="message_sent", model="cloud:openai/gpt", provider="openai")
    UsageEvent.objects.create(user=user, name="model_downloaded", model="qwen2.5-0.5b", provider="local")

    client.force_login(make_user("admin@example.com", is_staff=True, is_superuser=True))
    page = client.get(reverse("analytics_dashboard")).content.decode()
    assert "<svg" in page and 'class="bar-local"' in page and 'class="bar-cloud"' in page
    assert "7 to local models" in page and "1 to cloud models" in page
    assert "local:smol" in page and "qwen2.5-0.5b" in page
    assert "88%" in page  # 7 of 8 messages went to local models

    client.force_login(make_user("staff@example.com", is_staff=True))
    assert client.get(reverse("analytics_dashboard")).status_code == 403
    client.force_login(user)
    assert client.get(reverse("analytics_dashboard")).status_code == 302  # to the admin login


# --- Crash reports ------------------------------------------------------------------------


@pytest.mark.urls("tests.accounts.test_retention_analytics_crashes")
def test_a_failed_request_is_stored_without_content_addresses_or_secrets(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.get("/c/6f1c1e4e-8a4b-4c8e-9a47-2d1f8e2b9c10/boom/?q=ann@example.com")
    assert response.status_code == 500

    report = CrashReport.objects.get()
    stored = " ".join([report.message, report.traceback, report.request_path])
    assert report.exception_type == "builtins.ValueError" and report.source == "web"
    assert report.request_method == "GET" and report.request_path == "/c/<id>/boom/"
    assert "_crash" in report.traceback and "_failing_view" in report.traceback
    for private in ("divorce", "ann@example.com", API_KEY, "6f1c1e4e", "?q="):
        assert private not in stored
    assert "<text, 47 characters>" in report.message and "<email>" in report.message


def test_a_failed_background_task_is_stored_and_repeats_are_counted_on_one_report():
    logger = logging.getLogger("localai_site.core.tasks")
    for attempt in range(100):
        try:
            _crash(f"bob{attempt}@example.com")  # another message each time, the same failure
        except ValueError:
            logger.exception("Task failed")
    report = CrashReport.objects.get()
    assert report.source == "task" and report.count == 100
    assert report.last_seen_at > report.created_at
    assert "bob" not in report.message


def test_the_same_error_raised_from_another_place_is_another_report():
    logger = logging.getLogger("localai_site.core.tasks")
    for fail in (_crash, lambda email: _crash(email)):
        try:
            fail("dan@example.com")
        except ValueError:
            logger.exception("Task failed")
    assert CrashReport.objects.count() == 2


def test_a_flood_of_distinct_failures_stores_at_most_the_hourly_limit(settings):
    settings.CRASH_REPORTS_PER_HOUR = 25
    logger = logging.getLogger("localai_site.core.tasks")
    failures = [type(f"Failure{n}", (Exception,), {}) for n in range(1000)]
    for failure in [*failures, failures[0]]:
        try:
            raise failure("boom")
        except Exception:
            logger.exception("Task failed")
    assert CrashReport.objects.count() == 25
    # A failure already stored is still counted while new ones are dropped.
    assert CrashReport.objects.get(exception_type__endswith=".Failure0").count == 2


def test_database_errors_keep_neither_the_key_values_nor_short_quoted_names():
    message = (
        'duplicate key value violates unique constraint "accounts_user_email_key"\n'
        "DETAIL:  Key (email)=(Ann.Lee@example.com) already exists.\n"
        "while saving 'Ann' and \"Lee\""
    )
    try:
        raise IntegrityError(message)
    except IntegrityError:
        logging.getLogger("django.request").exception("Internal Server Error")
    stored = CrashReport.objects.get().message
    for private in ("Ann", "Lee", "example.com"):
        assert private not in stored
    assert "Key (email)=(<values>) already exists." in stored


def test_database_details_other_than_a_key_are_replaced_whole():
    try:
        raise IntegrityError(
            'null value in column "title" violates not-null constraint\n'
            "DETAIL:  Failing row contains (7, my divorce papers, null)."
        )
    except IntegrityError:
        logging.getLogger("django.request").exception("Internal Server Error")
    stored = CrashReport.objects.get().message
    assert "divorce" not in stored and "title" not in stored and "DETAIL:  <detail>" in stored


def test_admins_browse_crash_reports_and_see_how_often_each_happened(client, make_user):
    for _ in range(3):
        try:
            _crash("x@example.com")
        except ValueError:
            logging.getLogger("localai_site.core.tasks").exception("Task failed")
    client.force_login(make_user("admin@example.com", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:accounts_crashreport_changelist")).content.decode()
    assert "builtins.ValueError" in page and "3×" in page
    report = CrashReport.objects.first()
    detail = client.get(reverse("admin:accounts_crashreport_change", args=[report.pk])).content.decode()
    assert "_crash" in detail


@pytest.mark.django_db(transaction=True)
def test_an_error_inside_the_event_loop_is_stored_without_blocking_it():
    async def consumer_that_fails():
        try:
            _crash("carol@example.com")
        except ValueError:
            logging.getLogger("django.channels").exception("Consumer failed")

    asyncio.run(consumer_that_fails())
    wait_until(CrashReport.objects.exists, timeout=10, what="a crash report to be stored")
    report = CrashReport.objects.get()
    assert report.exception_type == "builtins.ValueError" and "carol" not in report.message

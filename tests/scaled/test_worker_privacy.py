"""Crash reports and retention where they happen in production: in a worker process."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import CrashReport
from accounts.tasks import build_export, enforce_retention
from tests.waiting import wait_until

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


def test_a_task_failing_in_a_worker_is_kept_as_a_crash_report(worker):
    build_export.apply_async(args=[987654], queue="default")  # no such archive
    wait_until(CrashReport.objects.exists, what="the worker to store a crash report")
    report = CrashReport.objects.get()
    assert report.source == "task" and report.exception_type.endswith("DoesNotExist")
    assert "export_build" in report.traceback


def test_the_scheduled_retention_task_runs_in_a_worker(worker):
    long_ago = timezone.now() - timedelta(days=120)
    old = CrashReport.objects.create(
        created_at=long_ago, last_seen_at=long_ago, source="web", logger="x", exception_type="E",
        message="", traceback="", fingerprint="f", release="1",
    )  # fmt: skip
    enforce_retention.apply_async(queue="default")
    wait_until(
        lambda: not CrashReport.objects.filter(pk=old.pk).exists(),
        what="the worker's retention run to delete the 120-day-old crash report",
    )

"""Crash reports and retention where they happen in production: in a worker process."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import CrashReport
from accounts.tasks import build_export, enforce_retention

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


def _wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.1)


def test_a_task_failing_in_a_worker_is_kept_as_a_crash_report(worker):
    build_export.apply_async(args=[987654], queue="default")  # no such archive
    _wait_for(CrashReport.objects.exists)
    report = CrashReport.objects.get()
    assert report.source == "task" and report.exception_type.endswith("DoesNotExist")
    assert "export_build" in report.traceback


def test_the_scheduled_retention_task_runs_in_a_worker(worker):
    old = CrashReport.objects.create(
        created_at=timezone.now() - timedelta(days=120), source="web", logger="x", exception_type="E",
        message="", traceback="", fingerprint="f", release="1",
    )  # fmt: skip
    enforce_retention.apply_async(queue="default")
    _wait_for(lambda: not CrashReport.objects.filter(pk=old.pk).exists())

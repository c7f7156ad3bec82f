"""The periodic tasks: Celery beat's schedule, which a thread of `localai serve` runs in
embedded mode (localai_site/schedule.py)."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from localai_site.celery import app


@pytest.mark.django_db
def test_the_schedule_clears_expired_sessions_and_keeps_live_ones(client, user):
    client.force_login(user)
    live = client.session.session_key
    Session.objects.create(
        session_key="expired" + "0" * 25,
        session_data=SessionStore().encode({"_auth_user_id": str(user.pk)}),
        expire_date=timezone.now() - timedelta(seconds=1),
    )
    app.loader.import_default_modules()  # each app's tasks.py, as a worker does
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        app.tasks[entry["task"]].run()
    assert list(Session.objects.values_list("session_key", flat=True)) == [live]


FIRST_RUN = """
import django; django.setup()
from concurrent.futures import ThreadPoolExecutor
from django.conf import settings
from localai_site.core.tasks import _task_named
names = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
with ThreadPoolExecutor(len(names)) as pool:
    print([task.name for task in pool.map(_task_named, names)] == names)
"""


def test_every_scheduled_task_is_found_when_all_start_at_once_in_a_fresh_process(tmp_path):
    """Start-up runs the whole schedule at once, on a pool, before any tasks.py is imported
    (in a fresh interpreter: this one has imported them all by now)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "localai_site.settings", "LOCALAI_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", FIRST_RUN], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr

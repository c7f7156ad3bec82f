"""The periodic tasks of ``CELERY_BEAT_SCHEDULE``, run by `localai serve` in embedded mode.

Scaled mode has Celery beat; the embedded instance has no beat process, yet retention
must still be enforced, expired sessions cleared and orphaned replies failed, so a thread
plays beat's part.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from .core.queues import Queue
from .core.tasks import task_enqueue


class EmbeddedScheduler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="localai-scheduler", daemon=True)

    def run(self) -> None:
        now = time.monotonic()
        # Everything runs once at start-up: an instance that was off still purges on time.
        due = {name: now for name in settings.CELERY_BEAT_SCHEDULE}
        while True:
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
                if time.monotonic() >= due[name]:
                    due[name] = time.monotonic() + float(entry["schedule"])
                    task_enqueue(entry["task"], queue=Queue.DEFAULT)
            time.sleep(1.0)

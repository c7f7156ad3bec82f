"""A process runs hundreds of streaming replies at once but only a few tasks that keep a
database connection for their whole run (localai_site/core/tasks.py), in both modes."""

from __future__ import annotations

import threading

from celery import current_app

import accounts.tasks  # noqa: F401 - registers the tasks by name
import chat.tasks  # noqa: F401
from localai_site.core.tasks import CONNECTION_HOLDERS_AT_ONCE, task_slot_give_back, task_slot_take


def test_replies_take_no_slot_and_other_tasks_wait_for_one():
    reply, export = current_app.tasks["chat.generate_reply"], current_app.tasks["accounts.build_export"]
    assert not any(task_slot_take(reply) for _ in range(3 * CONNECTION_HOLDERS_AT_ONCE))
    taken = [task_slot_take(export) for _ in range(CONNECTION_HOLDERS_AT_ONCE)]
    assert all(taken)
    one_more = threading.Event()
    waiting = threading.Thread(target=lambda: task_slot_take(export) and one_more.set(), daemon=True)
    waiting.start()
    assert not one_more.wait(0.5), "a ninth export ran while eight held their connections"
    task_slot_give_back()
    assert one_more.wait(5), "the export waiting did not run once a place was free"
    for _ in range(CONNECTION_HOLDERS_AT_ONCE):
        task_slot_give_back()

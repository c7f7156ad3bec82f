"""The database threads keep their connection through a burst of work, gaps included, and
let it go once the work stops."""

import time

import pytest
from django.db import connection

from localai_site.core import database_threads
from localai_site.core.database_threads import DatabaseThreads

pytestmark = pytest.mark.django_db(transaction=True)


def _query() -> tuple[bool, int]:
    """Whether this thread's connection was open before the query, and which one it used."""
    was_open = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return was_open, id(connection.connection)


def test_work_that_keeps_coming_keeps_one_connection(monkeypatch):
    monkeypatch.setattr(database_threads, "IDLE_CLOSE_S", 5.0)  # wider than any pause of this machine
    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    _, first = threads.submit(_query).result(timeout=10)
    time.sleep(0.1)  # the queue stood empty meanwhile
    was_open, second = threads.submit(_query).result(timeout=10)
    assert was_open and second == first


def test_a_quiet_thread_lets_its_connection_go(monkeypatch):
    monkeypatch.setattr(database_threads, "IDLE_CLOSE_S", 0.05)
    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    threads.submit(_query).result(timeout=10)
    time.sleep(1.0)
    was_open, _ = threads.submit(_query).result(timeout=10)
    assert not was_open


def test_a_failed_job_leaves_no_connection_behind():
    def fail() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    with pytest.raises(Exception, match="no_such_table"):
        threads.submit(fail).result(timeout=10)
    was_open, _ = threads.submit(_query).result(timeout=10)
    assert not was_open

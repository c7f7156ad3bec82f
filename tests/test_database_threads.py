"""The database threads let their connection go once no more work waits, and after a failure."""

import pytest
from django.db import connection

from localai_site.core.database_threads import DatabaseThreads

pytestmark = pytest.mark.django_db(transaction=True)


def _query() -> bool:
    """Whether this thread's connection was open before the query."""
    was_open = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return was_open


def test_a_thread_with_no_more_work_lets_its_connection_go():
    # Before its caller goes on: a process that forks next (the browser tests' server) must
    # not take an open SQLite connection into its child.
    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    threads.submit(_query).result(timeout=10)
    was_open = threads.submit(_query).result(timeout=10)
    assert not was_open


def test_a_failed_job_leaves_no_connection_behind():
    def fail() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    with pytest.raises(Exception, match="no_such_table"):
        threads.submit(fail).result(timeout=10)
    was_open = threads.submit(_query).result(timeout=10)
    assert not was_open

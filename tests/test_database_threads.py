"""The database threads keep their connection while work keeps coming, let it go after a
quiet spell or a failure, and close it before the process forks."""

import os
import threading
import time

import pytest
from django.db import connection

from localai_site.core import database_threads
from localai_site.core.database_threads import DatabaseThreads

pytestmark = pytest.mark.django_db(transaction=True)


def _query() -> bool:
    """Whether this thread's connection was open before the query."""
    was_open = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return was_open


def _on_each_thread(threads: DatabaseThreads, count: int, job) -> list:
    """``job``'s results on each of ``count`` threads: the barrier keeps one thread from
    taking two of them."""
    together = threading.Barrier(count, timeout=10)

    def job_then_wait():
        result = job()
        together.wait()
        return result

    return [future.result(timeout=10) for future in [threads.submit(job_then_wait) for _ in range(count)]]


def _fork_and_wait() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_a_thread_keeps_its_connection_from_one_job_to_the_next():
    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    threads.submit(_query).result(timeout=10)
    assert threads.submit(_query).result(timeout=10)


def test_a_thread_lets_its_connection_go_after_a_quiet_spell(monkeypatch):
    monkeypatch.setattr(database_threads, "IDLE_CLOSE_S", 0.05)
    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    threads.submit(_query).result(timeout=10)
    time.sleep(0.5)
    assert not threads.submit(_query).result(timeout=10)


def test_a_failed_job_leaves_no_connection_behind():
    def fail() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    with pytest.raises(Exception, match="no_such_table"):
        threads.submit(fail).result(timeout=10)
    assert not threads.submit(_query).result(timeout=10)


def test_the_threads_close_their_connections_before_the_process_forks():
    # A child must not share them: SQLite fails the child's writes ("disk I/O error") and a
    # PostgreSQL socket read by two processes mixes their answers.
    threads = DatabaseThreads(size=lambda: 2, name="test-db")
    _on_each_thread(threads, 2, _query)
    assert _on_each_thread(threads, 2, lambda: connection.connection is not None) == [True, True]
    _fork_and_wait()
    assert _on_each_thread(threads, 2, lambda: connection.connection is not None) == [False, False]


def test_a_job_that_forks_closes_its_own_connection_first():
    def query_then_fork() -> bool:
        _query()
        _fork_and_wait()
        return connection.connection is None

    threads = DatabaseThreads(size=lambda: 1, name="test-db")
    assert threads.submit(query_then_fork).result(timeout=10)

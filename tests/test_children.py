"""The supervised child processes native code runs in (``localai_site.core.children``): a crash
or a hang costs its one job, and the next job gets a fresh child."""

import os
import threading
import time

import pytest

from localai_site.core.children import ChildCrashed, ChildPool, ChildTimedOut
from tests import faults


@pytest.fixture
def pool():
    pool = ChildPool(size=2)
    yield pool
    pool.close()


def test_a_job_runs_in_a_child_that_stays_for_the_next(pool):
    first = pool.run(faults.child_pid, timeout=30)
    assert first != os.getpid()
    assert pool.run(faults.child_pid, timeout=30) == first
    with pytest.raises(ValueError, match="the job's own error"):
        pool.run(faults.fail, timeout=30)
    assert pool.run(faults.child_pid, timeout=30) == first, "a job's exception does not end its child"


def test_a_child_that_crashes_fails_its_job_and_the_next_job_gets_a_fresh_one(pool):
    before = pool.run(faults.child_pid, timeout=30)
    with pytest.raises(ChildCrashed):
        pool.run(faults.abort, timeout=30)
    after = pool.run(faults.child_pid, timeout=30)
    assert after not in (before, os.getpid())


def test_a_child_that_hangs_is_killed_at_the_time_limit(pool):
    started = time.monotonic()
    with pytest.raises(ChildTimedOut):
        pool.run(faults.hang, timeout=2)
    assert time.monotonic() - started < 10
    assert pool.run(faults.child_pid, timeout=30) != os.getpid()


def test_a_crash_costs_only_its_own_job_not_one_running_beside_it(pool):
    pool.run(faults.child_pid, timeout=30)  # one child warm, so both jobs start alike
    answers = {}

    def slow_but_fine():
        answers["fine"] = pool.run(time.sleep, 2, timeout=60)

    beside = threading.Thread(target=slow_but_fine)
    beside.start()
    time.sleep(0.3)
    with pytest.raises(ChildCrashed):
        pool.run(faults.abort, timeout=30)
    beside.join()
    assert answers == {"fine": None}

"""The executors: every kind of failure becomes an outcome, the limits count task time only."""

from __future__ import annotations

import time

import pytest

from bridge.executor import LocalExecutor, Task


def _task(name: str, timeout_s: float = 30.0, **kwargs) -> Task:
    return Task(key=name, function=f"tests.faults:{name}", kwargs=kwargs, timeout_s=timeout_s)


def test_every_failure_is_an_outcome_and_the_pool_goes_on():
    tasks = [_task("ok", value=1.0), _task("nan"), _task("hang", timeout_s=2.0), _task("die"),
             _task("oom"), _task("fail"), _task("ok", value=2.0)]
    with LocalExecutor(workers=2) as executor:
        outcomes = executor.map(tasks)
    reasons = [o.reason for o in outcomes]
    assert reasons == [None, "nonfinite", "timeout", "crashed", "out_of_memory", "error", None]
    assert outcomes[0].result["value"] == 1.0 and outcomes[-1].result["value"] == 2.0
    assert "a bug in the training code" in outcomes[5].message
    assert outcomes[2].seconds >= 2.0


def test_an_interrupt_is_no_verdict_on_the_task():
    from bridge.executor import run_task

    # an exception is the task's outcome; KeyboardInterrupt and SystemExit are not caught
    assert run_task("tests.faults:fail", {})[0] == "error"
    for name in ("interrupt", "exit"):
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            run_task(f"tests.faults:{name}", {})


def test_an_exception_in_the_parent_ends_the_workers_in_flight_and_reports_nothing():
    seen = []

    def stop(outcome):
        seen.append(outcome)
        raise KeyboardInterrupt  # Ctrl-C while the other training runs

    executor = LocalExecutor(workers=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.map([_task("ok", value=1.0), _task("hang", timeout_s=60.0)], on_done=stop)
        assert [o.key for o in seen] == ["ok"]
        assert all(w.task is None for w in executor.pool)  # the hanging one's worker is gone
        outcome, = executor.map([_task("ok", value=3.0)])  # and the executor still works
        assert outcome.result["value"] == 3.0
    finally:
        executor.close()


def test_the_time_limit_does_not_count_the_workers_start(monkeypatch):
    # workers that take 2 s to start, twice the task's whole limit
    import bridge.executor
    from tests.faults import slow_start_worker

    monkeypatch.setattr(bridge.executor, "_worker_main", slow_start_worker)
    started = time.monotonic()
    with LocalExecutor(workers=1) as executor:
        outcome, = executor.map([_task("ok", timeout_s=1.0, seconds=0.2)])
    assert outcome.reason is None, outcome.message
    assert 0.2 <= outcome.seconds < 1.0  # the task slept 0.2 s
    assert time.monotonic() - started >= 2.0


def test_a_worker_that_cannot_start_in_time_is_reported_as_such(monkeypatch):
    import bridge.executor
    from tests.faults import slow_start_worker

    monkeypatch.setattr(bridge.executor, "_worker_main", slow_start_worker)
    with LocalExecutor(workers=1, startup_timeout_s=0.5) as executor:
        outcome, = executor.map([_task("ok")])
    assert outcome.reason == "no_start"
    assert "did not start" in outcome.message


def test_a_task_that_dies_at_once_is_a_crash_even_when_the_loop_looks_late(monkeypatch):
    # The race CI met: the loop woke for another reason, and by the time it looked at this worker
    # the task had said it started and died. Its STARTED is still in the pipe; a death judged
    # before reading it was counted as a worker that never started (and stopped the search).
    import bridge.executor

    real_wait = bridge.executor.wait

    def late_wait(objects, timeout=None):
        ready = real_wait(objects, timeout=0)  # what is ready now...
        time.sleep(0.3)  # ...is all the loop sees, though the task may start and die meanwhile
        return ready

    monkeypatch.setattr(bridge.executor, "wait", late_wait)
    with LocalExecutor(workers=1) as executor:
        outcomes = executor.map([_task("ok", value=1.0), _task("die"), _task("ok", value=2.0)])
    assert [o.reason for o in outcomes] == [None, "crashed", None], [o.message for o in outcomes]
    assert outcomes[2].result["value"] == 2.0


def test_a_worker_that_dies_before_its_task_is_reported_as_not_started(monkeypatch):
    import bridge.executor
    from tests.faults import dead_on_start_worker

    monkeypatch.setattr(bridge.executor, "_worker_main", dead_on_start_worker)
    with LocalExecutor(workers=1) as executor:
        outcome, = executor.map([_task("ok")])
    assert outcome.reason == "no_start"
    assert "exit code 3" in outcome.message


@pytest.mark.slow  # Ray against local is also run, in the default set, by test_detector_search
def test_the_ray_executor_reports_the_same_outcomes():
    ray = pytest.importorskip("ray")
    from bridge.executor import RayExecutor

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        outcomes = RayExecutor().map([_task("ok", timeout_s=1.0, seconds=0.2), _task("nan"),
                                      _task("hang", timeout_s=2.0), _task("die")])
    finally:
        ray.shutdown()
    assert [o.reason for o in outcomes] == [None, "nonfinite", "timeout", "crashed"]

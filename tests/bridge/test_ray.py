"""The Ray executor on a local Ray instance that declares 2 GPUs (on a CPU machine: Ray only
counts them): GPUs per task from the settings and the cluster, each task its own
CUDA_VISIBLE_DEVICES, time limits counted from a task's start on its node (never its wait in the
queue), and cancelled or timed-out tasks that leave no process behind."""

from __future__ import annotations

import time

import pytest

from bridge.executor import ExecutorSetupError, RayExecutor, Task
from tests.bridge.test_gpus import gone, read_pid

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _patient_workers(executor: RayExecutor, task: Task | None = None) -> None:
    """The tasks' own workers may take 60 s to start (on 2 busy cores a fresh interpreter can take
    longer than the driver's short allowances here, which only the driver should use); with
    ``task``, every submission runs that task instead (what a node runs, unknown to the driver)."""
    real = executor.remote

    class Patient:
        def remote(self, submitted, startup_timeout_s, *args):
            return real.remote(task or submitted, 60.0, *args)

    executor.remote = Patient()


def _report(seconds: float, timeout_s: float = 30.0) -> Task:
    return Task("report", "tests.gpu_tasks:report", {"seconds": seconds}, timeout_s=timeout_s)


def test_two_tasks_at_a_time_each_with_its_own_gpu(cluster):
    with RayExecutor(gpus_per_task=1) as executor:
        assert executor.num_gpus == 1 and "1 GPU(s) each" in executor.describe()
        outcomes = executor.map([_report(1.0) for _ in range(4)])
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    runs = [o.result for o in outcomes]
    assert {r["cuda"] for r in runs} == {"0", "1"}  # seen in the worker process of the task
    for a in runs:
        overlapping = [b for b in runs if b is not a and b["start"] < a["end"] and
                       a["start"] < b["end"]]
        assert len(overlapping) <= 1  # two GPUs: never three at once
        assert all(b["cuda"] != a["cuda"] for b in overlapping)


def test_gpus_the_cluster_does_not_have_fail_before_anything_is_submitted(cluster):
    with pytest.raises(ExecutorSetupError, match="no node of the Ray cluster has that many"):
        RayExecutor(gpus_per_task=3)
    assert RayExecutor().num_gpus == 1  # the default: one GPU per task on a cluster with GPUs


def test_tasks_queued_behind_a_full_wave_are_not_cancelled_for_waiting(cluster):
    # 5 tasks of 2 s on 2 GPUs: the last starts ~4 s after its submission, past its own 3 s limit
    # plus the 1 s start-up allowance and 1 s backstop: counted from the submission, it would be
    # cancelled
    with RayExecutor(gpus_per_task=1, startup_timeout_s=1.0, backstop_s=1.0,
                     poll_s=0.2) as executor:
        _patient_workers(executor)
        outcomes = executor.map([_report(2.0, timeout_s=3.0) for _ in range(5)])
    assert [o.reason for o in outcomes] == [None] * 5, [o.message for o in outcomes]
    first = min(o.result["start"] for o in outcomes)
    assert max(o.result["start"] for o in outcomes) - first >= 3.5  # three waves, really queued


def test_a_timed_out_task_leaves_no_process_behind(cluster, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    task = Task("hang", "tests.gpu_tasks:spawn_and_hang", {"pid_file": str(pid_file)},
                timeout_s=1.5)
    with RayExecutor(gpus_per_task=1) as executor:
        outcome, = executor.map([task])
    assert outcome.reason == "timeout", outcome.message
    assert gone(read_pid(pid_file))


def test_a_cancelled_task_leaves_no_process_behind(cluster, tmp_path):
    """The search interrupted while a training runs: the task is cancelled, its training's tree
    killed, and nothing is reported for it."""
    pid_file = tmp_path / "grandchild.pid"
    tasks = [_report(0.1), Task("hang", "tests.gpu_tasks:spawn_and_hang",
                                {"pid_file": str(pid_file)}, timeout_s=60)]
    seen = []

    def stop(outcome):
        seen.append(outcome.key)
        read_pid(pid_file)  # the other task's training is running
        raise KeyboardInterrupt  # Ctrl-C

    with RayExecutor(gpus_per_task=1) as executor:
        with pytest.raises(KeyboardInterrupt):
            executor.map(tasks, on_done=stop)
    assert seen == ["report"]
    assert gone(read_pid(pid_file))


def test_a_force_cancelled_task_leaves_no_process_behind(cluster, tmp_path):
    """``ray.cancel(force=True)`` kills the task's Ray worker (and Ray its direct children), not
    the training's own children: the worker's guardian does."""
    pid_file = tmp_path / "grandchild.pid"
    task = Task("hang", "tests.gpu_tasks:spawn_and_hang", {"pid_file": str(pid_file)},
                timeout_s=60)
    with RayExecutor(gpus_per_task=1) as executor:
        # poll_s 60: the task cannot act on a polite cancel; only the force one ends it
        ref = executor.remote.remote(task, 30.0, executor._board(), "force:0", 1, {}, 60.0)
        grandchild = read_pid(pid_file)
        ray.cancel(ref, force=True)
        with pytest.raises(Exception):  # noqa: B017 - Ray's cancelled-task error
            ray.get(ref, timeout=30)
    assert gone(grandchild)


def test_the_driver_gives_up_on_a_started_task_that_never_returns(cluster, tmp_path):
    """A node that hangs: the driver cancels a task that has not returned long after its limit,
    counted from its start, and reports it as a timeout (a machine failure)."""
    pid_file = tmp_path / "grandchild.pid"
    task = Task("hang", "tests.gpu_tasks:spawn_and_hang", {"pid_file": str(pid_file)},
                timeout_s=60)
    with RayExecutor(gpus_per_task=1, startup_timeout_s=0.5, backstop_s=0.5, poll_s=0.2,
                     cancel_grace_s=2.0) as executor:
        # the task's own limit is 60 s; the driver is told it is 4 s (a node that lost track)
        short = Task(task.key, task.function, task.kwargs, timeout_s=4.0)
        _patient_workers(executor, task)  # the node runs the task with its 60 s limit
        started = time.monotonic()
        outcome, = executor.map([short])
    assert outcome.reason == "timeout" and "did not return within" in outcome.message
    assert time.monotonic() - started < 30
    assert gone(read_pid(pid_file))


def test_a_task_without_a_gpu_reserved_sees_none(cluster):
    from bridge.executor import _ray_run

    executor = RayExecutor()
    executor.num_gpus = 0  # as on a cluster without GPUs
    executor.remote = ray.remote(num_gpus=0, num_cpus=1, max_retries=0)(_ray_run)
    with executor:
        outcome, = executor.map([_report(0.0)])
    assert outcome.ok and outcome.result["cuda"] == ""


"""Isolated execution of trainings: every task in a worker process with a time limit.

A task names an importable function (``"package.module:function"``) and its keyword arguments
(JSON-able). Executors run many tasks in parallel and return one :class:`Outcome` per task, in task
order, whatever happened to it:

====================  ===================================================================
``reason``            what happened
====================  ===================================================================
None                  the function returned; ``result`` is its return value
``nonfinite``         it raised ``bridge.finite.NonFiniteLossError`` (NaN / inf loss)
``exploded``          it raised ``bridge.finite.ExplodingLossError`` (loss ran away)
``out_of_memory``     it ran out of memory (``MemoryError`` or a CUDA out-of-memory error)
``error``             it raised anything else (``message`` has the exception and traceback)
``timeout``           it ran past its time limit; the worker was killed and replaced
``no_start``          its worker could not start (an import failed, or it took longer than
                      ``startup_timeout_s`` to become ready)
``crashed``           the worker process died (segfault, ``os._exit``, killed by the OS)
====================  ===================================================================

Executors:

* :class:`LocalExecutor` — a pool of ``workers`` persistent worker processes (``spawn``: a fresh
  interpreter, nothing inherited but the environment), each optionally pinned to its own GPUs
  (``CUDA_VISIBLE_DEVICES``: one GPU, or a group of ``gpus_per_worker`` for a training that spans
  several). A worker that times out or dies is replaced; the others go on.
* :class:`RayExecutor` — Ray tasks with ``gpus_per_task`` GPUs each (Ray sets each task's
  ``CUDA_VISIBLE_DEVICES``), so trainings spread over every GPU of a Ray cluster (``address``:
  ``"auto"``, ``"ray://host:10001"``, or None for a local instance).

A task's time limit counts from the moment its worker starts running it, never the time a fresh
worker spends starting its interpreter and importing torch (seconds on a busy 2-core machine,
more on a cold cluster node), nor the time a Ray task waits in the cluster's queue: a worker tells
the executor when it begins a task, and a Ray task tells the driver when it starts on its node (a
small Ray actor the driver polls). A Ray task runs its work through a one-worker
:class:`LocalExecutor` on the node it lands on, so it gets the same isolation and the same limits;
the driver only gives up on a Ray task that has not returned ``startup_timeout_s + backstop_s``
after its own limit, counted from its start (a node that hangs); a task still waiting for a node
is never cancelled for waiting.

Process trees. Every worker leads its own process group, and everything its task starts (the
ranks of a multi-GPU training, data-loader processes, any subprocess) stays in it: a timeout, a
crash or a cancel kills the whole group (``os.killpg``), never only the worker. Two watchers cover
the cases in which nobody is left to do that: a thread of the worker kills the group when the
worker's parent dies (the search killed by SIGKILL, a Ray worker force-cancelled), and a small
guardian process forked into the group kills it when the worker itself dies (Ray's force cancel
kills a task's direct children only, which would leave their children running).
"""

from __future__ import annotations

import importlib
import itertools
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Callable, Sequence


WATCH_S = 0.5
"""How often (seconds) a worker and its guardian look whether their parent is still there."""


class CrashedError(RuntimeError):
    """A process of the task died without an exception (a signal, ``os._exit``): the machine's
    failure, not the loss's. Raised by a task that runs its work in other processes (the ranks of
    a multi-GPU training), so that the executor reports ``crashed`` as it does for a worker that
    dies."""


class ExecutorSetupError(RuntimeError):
    """The executor cannot run as asked on this machine or cluster (e.g. GPUs asked for where there
    are none); the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function`` ("module:name") called with ``kwargs``, within
    ``timeout_s`` seconds."""

    key: str
    function: str
    kwargs: dict = field(default_factory=dict)
    timeout_s: float = 3600.0
    log_path: str | None = None  # the task's stdout and stderr go there (None: the worker's)


@dataclass
class Outcome:
    """What became of a task (see the module docstring for ``reason``)."""

    key: str
    result: object = None
    reason: str | None = None
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason is None


def resolve(function: str) -> Callable:
    """The callable named by ``"package.module:function"``."""
    module, _, name = function.partition(":")
    if not name:
        raise ValueError(f"a task function is named 'module:function', got {function!r}")
    return getattr(importlib.import_module(module), name)


def classify(err: BaseException) -> str:
    """The outcome reason of an exception raised by a task."""
    name = type(err).__name__
    if isinstance(err, CrashedError):
        return "crashed"
    if name == "NonFiniteLossError":
        return "nonfinite"
    if name == "ExplodingLossError":
        return "exploded"
    if isinstance(err, MemoryError) or name == "OutOfMemoryError" or (
            isinstance(err, RuntimeError) and "out of memory" in str(err).lower()):
        return "out_of_memory"
    return "error"


def run_task(function: str, kwargs: dict) -> tuple[str | None, object, str]:
    """Run one task in this process: (reason, result, message).

    Every exception becomes an outcome; KeyboardInterrupt and SystemExit do not: an interrupt is
    no verdict on the task, and it ends the worker (the executor then reports ``crashed``, or the
    interrupted search records nothing)."""
    try:
        return None, resolve(function)(**kwargs), ""
    except Exception as err:  # noqa: BLE001 - every failure of the task becomes an outcome
        return classify(err), None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"


def run_task_logged(function: str, kwargs: dict, log_path: str | None):
    """:func:`run_task` with this process's stdout and stderr (file descriptors 1 and 2, so that
    C libraries' output goes there too) sent to ``log_path`` for the duration of the task."""
    if not log_path:
        return run_task(function, kwargs)
    import sys

    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return run_task(function, kwargs)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


STARTED = "started"  # a worker's word that it has begun the task it was sent


def _start_guardian() -> None:
    """Fork a guardian into this worker's process group (the worker leads it): once the worker
    is gone, for whatever reason, the guardian kills the group, itself included. It keeps no file
    descriptor open (the executor sees the worker's pipe close and its sentinel fire at once)."""
    worker = os.getpid()
    if os.fork():
        return
    try:  # the guardian: nothing but this loop, and no Python-level cleanup on the way out
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        while os.getppid() == worker:
            time.sleep(WATCH_S)
        os.killpg(worker, signal.SIGKILL)
    finally:
        os._exit(0)


def _watch_parent(parent: int) -> None:
    """A worker's thread: when the process that started the worker dies (the search killed, a
    Ray worker force-cancelled), kill this worker's process group: nobody else will."""
    while os.getppid() == parent:  # a dead parent's children are adopted at once, reaped or not
        time.sleep(WATCH_S)
    os.killpg(0, signal.SIGKILL)


def _worker_main(conn, env: dict) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the search (which ends its workers
    # and records nothing in flight) decides, not a worker that would report its task as failed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # this worker leads a process group of its own: whatever its task starts stays in it, and a
    # kill of the group (timeout, crash, cancel) ends the whole tree
    os.setpgid(0, 0)
    _start_guardian()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True,
                     name="watch-parent").start()
    os.environ.update(env)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        function, kwargs, log_path = message
        conn.send(STARTED)
        began = time.monotonic()
        reason, result, text = run_task_logged(function, kwargs, log_path)
        conn.send((reason, result, text, time.monotonic() - began))


class _Worker:
    def __init__(self, ctx, env: dict):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, env), daemon=True)
        self.process.start()
        child.close()
        self.env = env
        self.task: int | None = None
        self.sent = 0.0  # when the task was sent (time.monotonic())
        self.started: float | None = None  # when the worker said it began the task

    def kill(self) -> None:
        """Kill the worker and everything it started (its process group)."""
        kill_group(self.process.pid)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


def kill_group(pid: int | None) -> None:
    """SIGKILL the process group led by ``pid`` (a worker), if there is one. A worker that died
    before it made its group leaves none (``ProcessLookupError``): then there is nothing to kill."""
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalExecutor:
    """A pool of worker processes on this machine (see the module docstring).

    Args:
      workers: how many tasks run at once.
      gpus: optional list of GPU ids (as ``CUDA_VISIBLE_DEVICES`` names them), cut into groups of
        ``gpus_per_worker`` consecutive ids; worker k sees only group ``k % groups``.
      gpus_per_worker: GPUs each worker sees (a training spanning several GPUs).
      env: extra environment variables for the workers (e.g. thread counts).
      startup_timeout_s: how long a worker may take to start a task it was sent (a fresh
        interpreter importing torch); past it the task ends as ``no_start``.
      poll_s: the longest the executor waits before it looks at its workers again (None: until
        the next result or deadline). A Ray task needs it: Ray's cancel raises KeyboardInterrupt
        only when Python code runs, not inside a wait of hours.
    """

    def __init__(self, workers: int = 1, gpus: Sequence[int | str] | None = None,
                 env: dict | None = None, startup_timeout_s: float = 300.0,
                 gpus_per_worker: int = 1, poll_s: float | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if gpus_per_worker < 1:
            raise ValueError(f"gpus_per_worker must be >= 1, got {gpus_per_worker}")
        self.startup_timeout_s = float(startup_timeout_s)
        self.poll_s = poll_s
        self.ctx = mp.get_context("spawn")
        self.workers_wanted = workers
        self.gpus = [str(g) for g in (gpus or [])]
        if self.gpus and len(self.gpus) < gpus_per_worker:
            raise ValueError(f"{gpus_per_worker} GPUs per worker, but only {len(self.gpus)} GPU "
                             f"ids given ({','.join(self.gpus)})")
        self.gpu_groups = [self.gpus[i:i + gpus_per_worker]
                           for i in range(0, len(self.gpus) - gpus_per_worker + 1,
                                          gpus_per_worker)]
        self.env = dict(env or {})
        self.pool: list[_Worker] = []

    def _env_for(self, slot: int) -> dict:
        env = dict(self.env)
        if self.gpu_groups:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpu_groups[slot % len(self.gpu_groups)])
        return env

    def describe(self) -> str:
        """One line for the search's log: workers and the GPUs each sees."""
        n = self.workers_wanted
        if not self.gpu_groups:
            return f"{n} local worker(s) on CPU (no GPU assigned)"
        seen = " | ".join(",".join(self.gpu_groups[k % len(self.gpu_groups)]) for k in range(n))
        return (f"{n} local worker(s), {len(self.gpu_groups[0])} GPU(s) each "
                f"(CUDA_VISIBLE_DEVICES {seen})")

    def _spawn(self, slot: int) -> _Worker:
        return _Worker(self.ctx, self._env_for(slot))

    def map(self, tasks: Sequence[Task], on_done: Callable[[Outcome], None] | None = None
            ) -> list[Outcome]:
        """Run every task; returns their outcomes in task order. ``on_done`` sees each outcome
        as soon as it is known (for progress display and caching).

        An exception (KeyboardInterrupt, SIGTERM's Interrupted, an error in ``on_done``) kills
        the workers of the tasks in flight, whose outcomes are then never reported, and
        propagates."""
        try:
            return self._map(tasks, on_done)
        except BaseException:
            for slot, worker in enumerate(self.pool):
                if worker.task is not None:
                    worker.kill()
            self.pool = [w for w in self.pool if w.task is None]
            raise

    def _map(self, tasks: Sequence[Task], on_done) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))
        while len(self.pool) < min(self.workers_wanted, max(1, len(tasks))):
            self.pool.append(self._spawn(len(self.pool)))

        def finish(index: int, outcome: Outcome) -> None:
            outcomes[index] = outcome
            if on_done is not None:
                on_done(outcome)

        def replace(slot: int) -> None:
            self.pool[slot].kill()
            self.pool[slot] = self._spawn(slot)

        def deadline_of(worker: _Worker) -> float:
            if worker.started is None:
                return worker.sent + self.startup_timeout_s
            return worker.started + tasks[worker.task].timeout_s

        while pending or any(w.task is not None for w in self.pool):
            for slot, worker in enumerate(self.pool):
                if worker.task is None and pending:
                    index = pending.pop(0)
                    message = (tasks[index].function, tasks[index].kwargs, tasks[index].log_path)
                    try:
                        worker.conn.send(message)
                    except (BrokenPipeError, OSError):
                        replace(slot)
                        worker = self.pool[slot]
                        worker.conn.send(message)
                    worker.task, worker.sent, worker.started = index, time.monotonic(), None
            busy = [w for w in self.pool if w.task is not None]
            timeout = max(0.0, min(map(deadline_of, busy)) - time.monotonic())
            if self.poll_s is not None:
                timeout = min(timeout, self.poll_s)
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout)
            now = time.monotonic()
            for slot, worker in enumerate(self.pool):
                if worker.task is None:
                    continue
                index = worker.task
                key = tasks[index].key
                pipe_closed = False
                try:
                    reply = self._read(worker, now)
                except (EOFError, OSError):  # the pipe closed: the worker died
                    reply, pipe_closed = None, True
                if reply is not None:
                    worker.task = None
                    reason, result, message, seconds = reply  # seconds: as the worker timed it
                    finish(index, Outcome(key, result, reason, message, seconds))
                    continue
                elapsed = 0.0 if worker.started is None else now - worker.started
                if pipe_closed or not worker.process.is_alive():
                    message = self._death(worker)
                    reason = "crashed" if worker.started is not None else "no_start"
                    replace(slot)
                    finish(index, Outcome(key, None, reason, message, elapsed))
                elif worker.started is None and now >= deadline_of(worker):
                    replace(slot)
                    finish(index, Outcome(key, None, "no_start",
                                          f"its worker did not start it within "
                                          f"{self.startup_timeout_s:g} s", 0.0))
                elif worker.started is not None and elapsed >= tasks[index].timeout_s:
                    replace(slot)
                    finish(index, Outcome(key, None, "timeout",
                                          f"ran past its limit of {tasks[index].timeout_s:g} s; "
                                          "the worker was killed", elapsed))
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _read(worker: _Worker, now: float):
        """Every message the worker has sent so far, in order: its word that it began the task
        (``worker.started`` set to ``now``) and its result, returned (None if not there yet).

        Read before judging a worker dead: a task that dies at once leaves its STARTED in the pipe
        after the process is gone, and a death judged first would count it as never started.
        Raises EOFError when the pipe is closed and empty (the worker died)."""
        while worker.conn.poll():
            reply = worker.conn.recv()
            if reply == STARTED:
                worker.started = now
                continue
            return reply
        return None

    @staticmethod
    def _death(worker: _Worker) -> str:
        worker.process.join(timeout=5)
        return f"the worker process died (exit code {worker.process.exitcode})"

    def close(self) -> None:
        for w in self.pool:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            w.process.join(timeout=5)
            w.kill()
        self.pool = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def visible_gpus() -> list[str]:
    """The GPUs this process may hand to its workers, as ``CUDA_VISIBLE_DEVICES`` names them: the
    entries of this process's own ``CUDA_VISIBLE_DEVICES`` when it is set (a search limited to
    GPUs 4-7 gives its workers 4-7, not 0-3), else ``0 .. count-1``. Empty without CUDA."""
    import torch

    count = torch.cuda.device_count()
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()][:count]
    return [str(i) for i in range(count)]


CPU_WORKERS_MAX = 4
"""Default local workers on a machine without GPUs: one single-threaded training per core, at most
this many (the proxy task trains K = 4 candidates per generation by default). Measured on the
2-core CPU machine: two 1-thread trainings at once finish in about the time one 2-thread training
takes (75 s against 70 s for 1,200 FCOS steps), 1.9x the throughput."""


def default_workers(gpus_per_training: int | None, gpus: Sequence[str],
                    cpus: int | None = None) -> int:
    """Local trainings at once when ``--workers`` is not given: one per GPU, or per group of
    ``gpus_per_training`` GPUs, where there are GPUs; else one per core, at most
    :data:`CPU_WORKERS_MAX` (``cpus`` defaults to ``os.cpu_count()``)."""
    if gpus:
        return max(1, len(gpus) // int(gpus_per_training or 1))
    return max(1, min(CPU_WORKERS_MAX, cpus or os.cpu_count() or 1))


def local_gpu_plan(workers: int, gpus_per_training: int | None,
                   gpus: Sequence[str]) -> tuple[list[str], int]:
    """The GPU ids and the GPUs per worker of a :class:`LocalExecutor` with ``workers`` workers
    on a machine showing ``gpus``.

    ``gpus_per_training`` None: one GPU per worker where there are GPUs (workers beyond the GPU
    count share them, round robin), CPU trainings where there are none. A number N: each worker
    gets N GPUs of its own; the machine must show at least ``workers`` x N.

    Raises:
      ExecutorSetupError: N GPUs asked for where there are none or too few; says how to fix it.
    """
    if gpus_per_training is None:
        return list(gpus), 1
    n = int(gpus_per_training)
    if not gpus:
        raise ExecutorSetupError(
            f"{n} GPU(s) per training asked for, but this machine shows no GPU (torch sees no CUDA "
            f"device; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): run on a "
            "machine with GPUs, or leave --gpus-per-training out to train on CPU")
    if workers * n > len(gpus):
        raise ExecutorSetupError(
            f"{workers} worker(s) x {n} GPU(s) per training need {workers * n} GPUs, but this "
            f"machine shows {len(gpus)} ({','.join(gpus)}): lower --workers to "
            f"{max(1, len(gpus) // n)}" + (f" or --gpus-per-training to {len(gpus)}"
                                           if len(gpus) < n else ""))
    return list(gpus), n


# ----------------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------------

def ray_gpu_plan(gpus_per_task: int | None, cluster: dict, nodes: Sequence[dict]) -> int:
    """The ``num_gpus`` of every Ray task, from the settings and the cluster's resources (never
    the driver's own hardware: a head node without GPUs drives GPU workers fine).

    Args:
      gpus_per_task: None (one GPU per task where the cluster has GPUs, CPU tasks where it has
        none) or N >= 1 (N GPUs of one node per task).
      cluster: ``ray.cluster_resources()``; nodes: ``ray.nodes()`` (their ``Resources`` and
        ``Alive``).

    Raises:
      ExecutorSetupError: GPUs asked for but the cluster has none, or no node has N of them (a
        task would wait forever); says how to fix it.
    """
    total = float(cluster.get("GPU", 0))
    if gpus_per_task is None:
        return 1 if total >= 1 else 0
    n = int(gpus_per_task)
    if total < 1:
        raise ExecutorSetupError(
            f"{n} GPU(s) per training asked for, but the Ray cluster declares no GPU "
            f"(ray.cluster_resources(): {dict(cluster)}): start its nodes with GPUs (ray start "
            "... --num-gpus G on each GPU node), or leave --gpus-per-training out to train on CPU")
    per_node = [float(node.get("Resources", {}).get("GPU", 0)) for node in nodes
                if node.get("Alive", True)]
    if max(per_node, default=0.0) < n:
        raise ExecutorSetupError(
            f"{n} GPUs per training asked for, but no node of the Ray cluster has that many (GPUs "
            f"per node: {sorted(per_node, reverse=True)}; a training spans the GPUs of one node): "
            f"lower --gpus-per-training to {int(max(per_node, default=0))}, or add nodes with {n}")
    return n


BOARD_TIMEOUT_S = 300.0
"""How long a Ray task or the driver waits for the start board (an actor: a fresh worker process
on a busy cluster) before that is an error."""


class _StartBoard:
    """A Ray actor (no CPU of its own) where tasks note that they started on their node, so that
    the driver counts their time limit from then, not from their submission."""

    def __init__(self):
        self.started: set[str] = set()

    def start(self, token: str) -> None:
        self.started.add(token)

    def since(self, run: str) -> list[str]:
        """The tokens of run ``run`` that have started."""
        return [t for t in self.started if t.partition(":")[0] == run]

    def forget(self, run: str) -> None:
        self.started = {t for t in self.started if t.partition(":")[0] != run}


def _ray_run(task: Task, startup_timeout_s: float, board, token: str, num_gpus: int,
             env: dict, poll_s: float) -> Outcome:
    """A Ray task: ``task`` in a worker process of this node, with its time limit.

    The worker sees exactly the GPUs Ray gave this task (``CUDA_VISIBLE_DEVICES``, none for a CPU
    task); the board hears that the task started before the worker is spawned. A cancel
    (KeyboardInterrupt from ``ray.cancel``) kills the worker's process group on the way out."""
    import ray

    env = dict(env)
    if num_gpus:
        ids = [str(i) for i in ray.get_gpu_ids()]
        if len(ids) != num_gpus:
            raise RuntimeError(f"Ray gave this task GPUs {ids}, but it asked for {num_gpus}")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU was reserved for it: take none another task holds
    ray.get(board.start.remote(token), timeout=BOARD_TIMEOUT_S)
    with LocalExecutor(workers=1, env=env, startup_timeout_s=startup_timeout_s,
                       poll_s=poll_s) as executor:
        return executor.map([task])[0]


class RayExecutor:
    """Ray tasks (see the module docstring).

    Args:
      address: Ray cluster address; None starts (or joins) a local instance.
      gpus_per_task: GPUs of one node per task (see :func:`ray_gpu_plan`; None: one where the
        cluster has GPUs, none where it has none).
      num_cpus: CPUs each task reserves (for Ray's scheduling; a training may use more threads).
      env: extra environment variables for the workers the tasks start.
      init_kwargs: extra arguments for ``ray.init`` (e.g. ``num_cpus`` of a local instance).
      startup_timeout_s: how long a task's worker may take to start on its node.
      backstop_s: how long after a started task's limit (and its worker's start-up allowance)
        the driver waits for its outcome before it cancels it itself (a node that hangs).
      cancel_grace_s: after a cancel (KeyboardInterrupt in the task, which then kills its
        worker's process group), how long before the driver force-kills the task's Ray worker.
      poll_s: how often (seconds) the driver asks which tasks have started.

    Raises:
      ExecutorSetupError: GPUs asked for that the cluster does not have (before anything is
        submitted).
    """

    def __init__(self, address: str | None = None, gpus_per_task: int | None = None,
                 num_cpus: float = 1, env: dict | None = None, init_kwargs: dict | None = None,
                 startup_timeout_s: float = 300.0, backstop_s: float = 60.0,
                 cancel_grace_s: float = 10.0, poll_s: float = 1.0):
        try:
            import ray
        except ImportError as err:  # pragma: no cover - ray is pinned in requirements
            raise RuntimeError("the ray executor needs the 'ray' package (pip install ray)") from err
        self.ray = ray
        self.startup_timeout_s = float(startup_timeout_s)
        self.backstop_s = float(backstop_s)
        self.cancel_grace_s = float(cancel_grace_s)
        self.poll_s = float(poll_s)
        self.env = dict(env or {})
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     **(init_kwargs or {}))
        self.cluster = ray.cluster_resources()
        self.num_gpus = ray_gpu_plan(gpus_per_task, self.cluster, ray.nodes())
        self.remote = ray.remote(num_gpus=self.num_gpus, num_cpus=num_cpus,
                                 max_retries=0)(_ray_run)
        self.board = None
        self.runs = itertools.count()

    def describe(self) -> str:
        """One line for the search's log: what each task gets, what the cluster has."""
        each = f"{self.num_gpus} GPU(s) each" if self.num_gpus else "on CPU (no GPU in the cluster)"
        return (f"Ray tasks, {each}; cluster: {self.cluster.get('GPU', 0):g} GPU(s), "
                f"{self.cluster.get('CPU', 0):g} CPU(s)")

    def _board(self):
        if self.board is None:
            self.board = self.ray.remote(num_cpus=0)(_StartBoard).remote()
        return self.board

    def map(self, tasks: Sequence[Task], on_done=None) -> list[Outcome]:
        """Run every task; outcomes in task order (as :meth:`LocalExecutor.map`).

        An exception (KeyboardInterrupt, an error in ``on_done``) cancels the tasks in flight,
        whose outcomes are then never reported, and propagates."""
        board = self._board()
        run = str(next(self.runs))
        refs = {self.remote.remote(t, self.startup_timeout_s, board, f"{run}:{i}", self.num_gpus,
                                   self.env, self.poll_s): i for i, t in enumerate(tasks)}
        waiting = list(refs)
        try:
            return self._map(tasks, on_done, board, run, refs, waiting)
        except BaseException:
            self._cancel(waiting)
            raise
        finally:
            board.forget.remote(run)

    def _map(self, tasks, on_done, board, run, refs, waiting) -> list[Outcome]:
        ray = self.ray
        started: dict = {}  # ref -> when the driver first saw it started (time.monotonic())
        token = {ref: f"{run}:{i}" for ref, i in refs.items()}

        def give_up_at(ref) -> float:
            return (started[ref] + self.startup_timeout_s + tasks[refs[ref]].timeout_s
                    + self.backstop_s)

        outcomes: list[Outcome | None] = [None] * len(tasks)

        def finish(ref, outcome: Outcome) -> None:
            outcomes[refs[ref]] = outcome
            waiting.remove(ref)
            if on_done:
                on_done(outcome)

        while waiting:
            deadlines = [give_up_at(r) for r in waiting if r in started]
            # poll the board while a task has not been seen starting; else sleep to a deadline
            timeout = self.poll_s if any(r not in started for r in waiting) else None
            if deadlines:
                soonest = max(0.01, min(deadlines) - time.monotonic())
                timeout = soonest if timeout is None else min(timeout, soonest)
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=timeout)
            if done:  # and whatever else is ready by now
                done, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
            now = time.monotonic()
            if any(r not in started for r in waiting):
                seen = set(ray.get(board.since.remote(run), timeout=BOARD_TIMEOUT_S))
                for ref in waiting:
                    if ref not in started and token[ref] in seen:
                        started[ref] = now
            for ref in done:
                i = refs[ref]
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - the Ray worker itself died
                    outcome = Outcome(tasks[i].key, None, "crashed",
                                      f"{type(err).__name__}: {err}",
                                      now - started.get(ref, now))
                finish(ref, outcome)
            for ref in [r for r in waiting if r in started and now >= give_up_at(r)]:
                i = refs[ref]
                self._cancel([ref])
                finish(ref, Outcome(tasks[i].key, None, "timeout",
                                    f"the Ray task did not return within {now - started[ref]:.0f} "
                                    f"s of its start on its node (its limit is "
                                    f"{tasks[i].timeout_s:g} s, plus {self.startup_timeout_s:g} s "
                                    f"for its worker to start and {self.backstop_s:g} s); it was "
                                    "cancelled", now - started[ref]))
        return outcomes  # type: ignore[return-value]

    def _cancel(self, refs) -> None:
        """Cancel tasks: a queued one is dropped; a running one gets a KeyboardInterrupt, on which
        its executor kills its worker's process group; one that has not ended after
        ``cancel_grace_s`` is force-killed (its Ray worker dies, and its worker's guardian kills
        the group)."""
        ray = self.ray
        refs = list(refs)
        if not refs:
            return
        for ref in refs:
            ray.cancel(ref, force=False)
        _, rest = ray.wait(refs, num_returns=len(refs), timeout=self.cancel_grace_s)
        for ref in rest:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.board is not None:
            self.ray.kill(self.board)
            self.board = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
  interpreter, nothing inherited but the environment), each optionally pinned to one GPU
  (``CUDA_VISIBLE_DEVICES``). A worker that times out or dies is replaced; the others go on.
* :class:`RayExecutor` — Ray tasks with ``num_gpus`` each, so trainings spread over every GPU of a
  Ray cluster (``address``: ``"auto"``, ``"ray://host:10001"``, or None for a local instance).

A task's time limit counts from the moment its worker starts running it, never the time a fresh
worker spends starting its interpreter and importing torch (seconds on a busy 2-core machine,
more on a cold cluster node): a worker tells the executor when it begins a task. A Ray task runs
its work through a one-worker :class:`LocalExecutor` on the node it lands on, so it gets the same
isolation and the same limits; the driver only gives up on a Ray task that has not finished
``startup_timeout_s`` after its own limit (a node that never starts it).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Callable, Sequence


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


def _worker_main(conn, env: dict) -> None:
    import signal

    # Ctrl-C in a terminal reaches the whole process group: the search (which ends its workers
    # and records nothing in flight) decides, not a worker that would report its task as failed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class LocalExecutor:
    """A pool of worker processes on this machine (see the module docstring).

    Args:
      workers: how many tasks run at once.
      gpus: optional list of GPU ids; worker k sees only ``gpus[k % len(gpus)]``.
      env: extra environment variables for the workers (e.g. thread counts).
      startup_timeout_s: how long a worker may take to start a task it was sent (a fresh
        interpreter importing torch); past it the task ends as ``no_start``.
    """

    def __init__(self, workers: int = 1, gpus: Sequence[int] | None = None,
                 env: dict | None = None, startup_timeout_s: float = 300.0):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.startup_timeout_s = float(startup_timeout_s)
        self.ctx = mp.get_context("spawn")
        self.workers_wanted = workers
        self.gpus = list(gpus or [])
        self.env = dict(env or {})
        self.pool: list[_Worker] = []

    def _env_for(self, slot: int) -> dict:
        env = dict(self.env)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpus[slot % len(self.gpus)])
        return env

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
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                 timeout=max(0.0, min(map(deadline_of, busy)) - time.monotonic()))
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


def _ray_run(task: Task, startup_timeout_s: float) -> Outcome:
    """A Ray task: ``task`` in a worker process of this node, with its time limit."""
    with LocalExecutor(workers=1, startup_timeout_s=startup_timeout_s) as executor:
        return executor.map([task])[0]


class RayExecutor:
    """Ray tasks (see the module docstring).

    Args:
      address: Ray cluster address; None starts (or joins) a local instance.
      num_gpus, num_cpus: resources each task asks for.
      init_kwargs: extra arguments for ``ray.init`` (e.g. ``num_cpus`` of a local instance).
      startup_timeout_s: how long a task may wait for a node and a worker before its own time
        limit starts counting.
    """

    def __init__(self, address: str | None = None, num_gpus: float = 0, num_cpus: float = 1,
                 init_kwargs: dict | None = None, startup_timeout_s: float = 300.0):
        try:
            import ray
        except ImportError as err:  # pragma: no cover - ray is pinned in requirements
            raise RuntimeError("the ray executor needs the 'ray' package (pip install ray)") from err
        self.ray = ray
        self.startup_timeout_s = float(startup_timeout_s)
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     **(init_kwargs or {}))
        self.remote = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=0)(_ray_run)

    def map(self, tasks: Sequence[Task], on_done=None) -> list[Outcome]:
        ray = self.ray
        refs = {self.remote.remote(t, self.startup_timeout_s): i for i, t in enumerate(tasks)}
        submitted = {ref: time.monotonic() for ref in refs}

        def give_up_at(ref) -> float:
            return submitted[ref] + tasks[refs[ref]].timeout_s + 2 * self.startup_timeout_s

        outcomes: list[Outcome | None] = [None] * len(tasks)
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1,
                                     timeout=max(0.01, min(map(give_up_at, waiting))
                                                 - time.monotonic()))
            now = time.monotonic()
            for ref in done:
                i = refs[ref]
                try:
                    outcomes[i] = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - the Ray worker itself died
                    outcomes[i] = Outcome(tasks[i].key, None, "crashed",
                                          f"{type(err).__name__}: {err}", now - submitted[ref])
                if on_done:
                    on_done(outcomes[i])
            for ref in list(waiting):
                i = refs[ref]
                if now >= give_up_at(ref):
                    ray.cancel(ref, force=True)
                    waiting.remove(ref)
                    outcomes[i] = Outcome(tasks[i].key, None, "no_start",
                                          f"Ray did not finish it within "
                                          f"{now - submitted[ref]:.0f} s of its submission (its "
                                          f"limit is {tasks[i].timeout_s:g} s once started); "
                                          "the task was cancelled", 0.0)
                    if on_done:
                        on_done(outcomes[i])
        return outcomes  # type: ignore[return-value]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

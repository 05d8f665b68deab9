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
``crashed``           the worker process died (segfault, ``os._exit``, killed by the OS)
====================  ===================================================================

Executors:

* :class:`LocalExecutor` — a pool of ``workers`` persistent worker processes (``spawn``: a fresh
  interpreter, nothing inherited but the environment), each optionally pinned to one GPU
  (``CUDA_VISIBLE_DEVICES``). A worker that times out or dies is replaced; the others go on.
* :class:`RayExecutor` — Ray tasks with ``num_gpus`` each, so trainings spread over every GPU of a
  Ray cluster (``address``: ``"auto"``, ``"ray://host:10001"``, or None for a local instance).
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
    """Run one task in this process: (reason, result, message)."""
    try:
        return None, resolve(function)(**kwargs), ""
    except BaseException as err:  # noqa: BLE001 - every failure becomes an outcome
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


def _worker_main(conn, env: dict) -> None:
    os.environ.update(env)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        function, kwargs, log_path = message
        conn.send(run_task_logged(function, kwargs, log_path))


class _Worker:
    def __init__(self, ctx, env: dict):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, env), daemon=True)
        self.process.start()
        child.close()
        self.env = env
        self.task: int | None = None
        self.started = 0.0

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
    """

    def __init__(self, workers: int = 1, gpus: Sequence[int] | None = None,
                 env: dict | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
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
        as soon as it is known (for progress display and caching)."""
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))
        while len(self.pool) < min(self.workers_wanted, max(1, len(tasks))):
            self.pool.append(self._spawn(len(self.pool)))

        def finish(index: int, outcome: Outcome) -> None:
            outcomes[index] = outcome
            if on_done is not None:
                on_done(outcome)

        while pending or any(w.task is not None for w in self.pool):
            for slot, worker in enumerate(self.pool):
                if worker.task is None and pending:
                    index = pending.pop(0)
                    message = (tasks[index].function, tasks[index].kwargs, tasks[index].log_path)
                    try:
                        worker.conn.send(message)
                    except (BrokenPipeError, OSError):
                        worker.kill()
                        self.pool[slot] = worker = self._spawn(slot)
                        worker.conn.send(message)
                    worker.task, worker.started = index, time.monotonic()
            busy = [w for w in self.pool if w.task is not None]
            deadline = min(w.started + tasks[w.task].timeout_s for w in busy)
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                         timeout=max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for slot, worker in enumerate(self.pool):
                if worker.task is None:
                    continue
                index, elapsed = worker.task, now - worker.started
                key = tasks[index].key
                if worker.conn in ready:
                    try:
                        reason, result, message = worker.conn.recv()
                    except (EOFError, OSError):
                        reason, result, message = "crashed", None, self._death(worker)
                        worker.kill()
                        self.pool[slot] = self._spawn(slot)
                    else:
                        worker.task = None
                    finish(index, Outcome(key, result, reason, message, elapsed))
                elif worker.process.sentinel in ready or not worker.process.is_alive():
                    message = self._death(worker)
                    worker.kill()
                    self.pool[slot] = self._spawn(slot)
                    finish(index, Outcome(key, None, "crashed", message, elapsed))
                elif elapsed >= tasks[index].timeout_s:
                    worker.kill()
                    self.pool[slot] = self._spawn(slot)
                    finish(index, Outcome(key, None, "timeout",
                                          f"ran past its limit of {tasks[index].timeout_s:g} s; "
                                          "the worker was killed", elapsed))
        return outcomes  # type: ignore[return-value]

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


def _ray_run(function: str, kwargs: dict, log_path: str | None):
    return run_task_logged(function, kwargs, log_path)


class RayExecutor:
    """Ray tasks (see the module docstring).

    Args:
      address: Ray cluster address; None starts (or joins) a local instance.
      num_gpus, num_cpus: resources each task asks for.
      init_kwargs: extra arguments for ``ray.init`` (e.g. ``num_cpus`` of a local instance).
    """

    def __init__(self, address: str | None = None, num_gpus: float = 0, num_cpus: float = 1,
                 init_kwargs: dict | None = None):
        try:
            import ray
        except ImportError as err:  # pragma: no cover - ray is pinned in requirements
            raise RuntimeError("the ray executor needs the 'ray' package (pip install ray)") from err
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     **(init_kwargs or {}))
        self.remote = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=0)(_ray_run)

    def map(self, tasks: Sequence[Task], on_done=None) -> list[Outcome]:
        ray = self.ray
        refs = {self.remote.remote(t.function, t.kwargs, t.log_path): i
                for i, t in enumerate(tasks)}
        started = {ref: time.monotonic() for ref in refs}
        outcomes: list[Outcome | None] = [None] * len(tasks)
        waiting = list(refs)
        while waiting:
            deadline = min(started[r] + tasks[refs[r]].timeout_s for r in waiting)
            done, waiting = ray.wait(waiting, num_returns=1,
                                     timeout=max(0.01, deadline - time.monotonic()))
            now = time.monotonic()
            for ref in done:
                i = refs[ref]
                try:
                    reason, result, message = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - the worker died
                    reason, result, message = "crashed", None, f"{type(err).__name__}: {err}"
                outcomes[i] = Outcome(tasks[i].key, result, reason, message, now - started[ref])
                if on_done:
                    on_done(outcomes[i])
            for ref in list(waiting):
                i = refs[ref]
                if now - started[ref] >= tasks[i].timeout_s:
                    ray.cancel(ref, force=True)
                    waiting.remove(ref)
                    outcomes[i] = Outcome(tasks[i].key, None, "timeout",
                                          f"ran past its limit of {tasks[i].timeout_s:g} s; the "
                                          "task was cancelled", now - started[ref])
                    if on_done:
                        on_done(outcomes[i])
        return outcomes  # type: ignore[return-value]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

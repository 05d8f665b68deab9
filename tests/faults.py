"""Task functions with injected faults, for the executor and search tests (run in workers)."""

from __future__ import annotations

import os
import signal
import time


class NonFiniteLossError(RuntimeError):
    """Stands in for bridge.finite.NonFiniteLossError (classified by name)."""


def ok(value: float = 1.0, seconds: float = 0.0) -> dict:
    time.sleep(seconds)
    return {"value": value, "pid": os.getpid()}


def nan(step: int = 3) -> dict:
    raise NonFiniteLossError(f"loss became nan at step {step}")


def hang() -> dict:
    while True:
        time.sleep(1)


def die() -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def oom() -> dict:
    raise MemoryError("simulated out of memory")


def fail() -> dict:
    raise ValueError("a bug in the training code")


def fake_training(formula: str, work_dir: str, **kwargs) -> dict:
    """Stands in for bridge.search_stages.train_candidate: deterministic, instant, and faulty for
    some formulas (chosen by a hash of the text, the initial loss always fine): NaN loss, a
    training that hangs, a worker that dies."""
    import hashlib

    h = int(hashlib.sha256(formula.encode()).hexdigest(), 16)
    if not formula.startswith("-w * (y * ((1 - sigmoid(x)) * (1 - sigmoid(x))) * log(sigmoid(x))"):
        fault = h % 5
        if fault == 0:
            raise NonFiniteLossError(f"the cls_binary loss {formula!r} produced nan at step 3")
        if fault == 1:
            hang()
        if fault == 2:
            die()
    return {"mAP": (h % 1000) / 2000.0, "mAP_50": 0.0, "loss_first": 1.0, "loss_last": 0.5,
            "train_seconds": 0.0}


def slow_start_worker(conn, env: dict) -> None:
    """A worker process that takes 2 s to start (as a fresh interpreter importing torch does on a
    busy machine), then serves tasks as ``bridge.executor`` workers do."""
    time.sleep(2.0)
    from bridge.executor import _worker_main

    _worker_main(conn, env)


def dead_on_start_worker(conn, env: dict) -> None:
    """A worker process that dies before it reads its first task (a broken environment)."""
    os._exit(3)


def fake_seeded_training(formula: str, work_dir: str, seed: int = 0, **kwargs) -> dict:
    """Stands in for bridge.search_stages.train_candidate in tests of bridge.compare: instant and
    deterministic from the formula text and the seed (a per-loss level plus a per-seed offset, in
    mAP units, 0..0.26); a formula with ``exp`` in it fails as a NaN loss (a final outcome)."""
    import hashlib

    if "exp" in formula:
        raise NonFiniteLossError(f"the loss {formula!r} produced nan at step 3")
    level = int(hashlib.sha256(formula.encode()).hexdigest(), 16) % 1000 / 4000.0
    offset = int(hashlib.sha256(f"{formula}|{seed}".encode()).hexdigest(), 16) % 1000 / 50_000.0
    return {"mAP": level + offset, "mAP_50": 2 * (level + offset), "loss_first": 1.0,
            "loss_last": 0.5, "train_seconds": 0.0}


def crash_once_training(formula: str, work_dir: str, seed: int = 0, **kwargs) -> dict:
    """:func:`fake_seeded_training`, but the worker dies the first time a training folder is used
    for seed 1 (a machine failure: the same training succeeds when tried again)."""
    marker = os.path.join(work_dir, "crashed-once")
    if seed == 1 and not os.path.exists(marker):
        os.makedirs(work_dir, exist_ok=True)
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_seeded_training(formula, work_dir, seed=seed, **kwargs)


def flaky_training(formula: str, work_dir: str, **kwargs) -> dict:
    """Stands in for bridge.search_stages.train_candidate in the search's fault-injection test:
    deterministic from the formula text, 0.4 s long (so that a signal can land inside a
    training), and for about a third of the formulas (never the initial loss) its worker is
    killed the first time that training's folder is used: a machine failure that the retry on a
    fresh worker survives."""
    import hashlib

    h = int(hashlib.sha256(formula.encode()).hexdigest(), 16)
    marker = os.path.join(work_dir, "killed-once")
    if h % 3 == 0 and not formula.startswith("-w * (y * ((1 - sigmoid(x))") and \
            not os.path.exists(marker):
        os.makedirs(work_dir, exist_ok=True)
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.4)
    return {"mAP": (h % 1000) / 2000.0, "mAP_50": 0.0, "loss_first": 1.0, "loss_last": 0.5,
            "train_seconds": 0.4}


def interrupt() -> dict:
    raise KeyboardInterrupt


def exit() -> dict:  # noqa: A001 - named for what it does
    raise SystemExit(3)

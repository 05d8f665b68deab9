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

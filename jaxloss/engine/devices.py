"""Spreading the batched engine over every core of a CPU.

The engine's run loop (:mod:`jaxloss.engine.batched`) is one XLA while loop per block of genomes, and XLA
runs a loop on one thread: on a CPU the engine would use one core however many there are. JAX can
present a CPU's cores as several devices (``jax_num_cpu_devices``); the engine then gives each
device its share of the blocks (:func:`shard_count`), and the devices run at the same time.

The number of CPU devices must be chosen before JAX computes anything in the process, so it is a
decision of the program, not of the library: ``python -m jaxloss.search`` and the benchmarks call
:func:`use_cpu_cores` first thing (``--cpu-devices``); a program that imports jaxloss calls it
right after its imports. Without it the engine runs as before, on one core. On a GPU nothing
changes: one device does all the work.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh


def available_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def use_cpu_cores(count: int | None = None, *, strict: bool = True) -> int:
    """Present ``count`` CPU devices to JAX (default: one per core this process may use).

    Returns the number of CPU devices the process will have. With ``strict`` (the default) raises
    RuntimeError, saying what to do, when JAX has already computed something in this process (the
    setting can no longer take effect); without it, leaves the process as it is and returns what
    it has (for defaults, e.g. a command-line entry point called from a running program). Raises
    ValueError for a count below 1.
    """
    if count is not None and count < 1:
        raise ValueError(f"--cpu-devices must be at least 1, not {count}")
    wanted = available_cores() if count is None else int(count)
    try:
        jax.config.update("jax_num_cpu_devices", wanted)
    except RuntimeError as error:
        if not strict:
            return len(jax.devices("cpu"))
        raise RuntimeError(
            "jaxloss.use_cpu_cores() must run before JAX computes anything in this process "
            "(call it right after the imports, before any jax or jaxloss computation); "
            f"JAX said: {error}") from None
    return wanted


def blocks_mesh() -> Mesh:
    """The mesh the engine deals its blocks over: every device along one axis, ``"blocks"``."""
    return Mesh(np.array(jax.devices()), ("blocks",))


def shard_count() -> int:
    """Devices the engine spreads a population's blocks over: every device when JAX runs on CPU
    (one unless :func:`use_cpu_cores` asked for more), one on an accelerator."""
    if jax.default_backend() != "cpu":
        return 1
    return jax.device_count()

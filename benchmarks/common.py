"""Helpers shared by the benchmark scripts: machine description and timing."""

from __future__ import annotations

import os
import platform
import time
from typing import Callable


def machine() -> dict:
    """What the figures were measured on."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [d.device_kind for d in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall-clock seconds of ``repeats`` calls (the first call is not excluded: warm up first)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def raw_elementwise_rate(n: int = 1 << 22) -> float:
    """Elements per second of ``jnp.exp`` over a large float32 array (4M elements, best of 20
    calls): the machine's raw element-wise rate. Measure it before the workload allocates."""
    import jax
    import jax.numpy as jnp

    x = jnp.linspace(-5, 5, n, dtype=jnp.float32)
    f = jax.jit(jnp.exp)
    f(x).block_until_ready()
    return n / best_time(lambda: f(x).block_until_ready(), repeats=20)

"""Task functions for the GPU-wiring and process-tree tests (run in executor workers)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def report(seconds: float = 1.0) -> dict:
    """Sleeps ``seconds``; returns the CUDA_VISIBLE_DEVICES this worker sees and when it ran
    (``time.time()``, seconds)."""
    start = time.time()
    time.sleep(seconds)
    return {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time(),
            "pid": os.getpid()}


def spawn_and_hang(pid_file: str) -> dict:
    """Starts a grandchild (``sleep 600``, as a training starts its ranks and data loaders),
    writes its pid to ``pid_file`` and hangs."""
    child = subprocess.Popen(["sleep", "600"])
    tmp = Path(pid_file + ".tmp")
    tmp.write_text(str(child.pid))
    tmp.rename(pid_file)  # whole or absent for the test that reads it
    while True:
        time.sleep(1)

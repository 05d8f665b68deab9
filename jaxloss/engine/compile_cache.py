"""A compilation cache on disk, so that a search's second run does not compile everything again.

The checks and the mini simulation are large XLA programs: compiling them is most of a search's
first generation on a CPU (about 25 s of 35 s for a population of 300 on 2 cores), and every run,
``--resume`` included, used to pay for it again. JAX can keep compiled programs on disk
(``jax_compilation_cache_dir``); :func:`use_compile_cache` points it at a folder, and the next
process that compiles the same program for the same devices loads it instead (a few seconds of
tracing remain). Like :func:`jaxloss.engine.devices.use_cpu_cores` this is a decision of the program, not
of the library: ``python -m jaxloss.search`` calls it (``--compile-cache DIR``,
``--no-compile-cache``); importing jaxloss changes nothing.

A cache the process already has (``JAX_COMPILATION_CACHE_DIR`` in the environment, or
``jax.config.update("jax_compilation_cache_dir", ...)`` by the program, as the test suite does) is
kept. Entries are keyed by the program, the JAX and XLA versions and the devices, so a stale or
foreign entry is never used; deleting the folder is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

MIN_COMPILE_SECONDS = 0.5
"""Programs that compile faster than this are not written to the cache (not worth a file)."""


def default_folder() -> Path:
    """``$JAXLOSS_CACHE_DIR/jax``, else ``$XDG_CACHE_HOME/jaxloss/jax``, else
    ``~/.cache/jaxloss/jax``."""
    if os.environ.get("JAXLOSS_CACHE_DIR"):
        return Path(os.environ["JAXLOSS_CACHE_DIR"]).expanduser() / "jax"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "jaxloss" / "jax"


def current_folder() -> str | None:
    """The compilation cache folder this process uses now (None: no cache)."""
    return jax.config.jax_compilation_cache_dir or None


def use_compile_cache(folder: "str | Path | None" = None) -> str:
    """Keep compiled programs in ``folder`` (default: :func:`default_folder`) from now on.

    Returns the folder in use, which is the one the process already had if it had one (see the
    module docstring). Call it before the first compilation to cache everything.

    Raises:
      OSError: the folder cannot be created or written to (the message says which and why).
    """
    existing = current_folder()
    if existing:
        return existing
    path = Path(folder).expanduser() if folder is not None else default_folder()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(f"the compilation cache folder {path} cannot be written to "
                      f"({err.strerror or err})") from err
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return str(path)

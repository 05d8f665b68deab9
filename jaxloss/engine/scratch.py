"""The engine's value and derivative buffers, kept from one call to the next.

Each engine call needs buffers of tens of MiB per CPU device (``engine.buffer_rows`` rows of S
points). Allocated inside the compiled call, they are fresh memory every time, and faulting in
fresh pages costs more than a check's arithmetic: 65 ms of a 0.5 s full-grid check of 10,000
candidates, most of the fixed cost of a screened check (2-core CPU). Instead, a caller takes
buffers of the right shape here, donates them to its compiled call (which works in them and
returns them) and gives them back for the next call of the same shape.

At most :data:`MAX_KEPT` shapes are kept (the least recently used go first); :func:`release`
frees them all. A call that fails loses its buffers (they were donated), nothing else.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxloss.engine import devices

MAX_KEPT = 4

_kept: "OrderedDict[Hashable, object]" = OrderedDict()
_lock = threading.Lock()


def zeros(shape: tuple, dtype=jnp.float32, *, split: bool) -> jax.Array:
    """A zero buffer [rows·devices, S]; with ``split``, its rows dealt out over every device
    (``split`` must match how the engine will run: ``engine.scratch_shape`` says)."""
    if not split:
        return jnp.zeros(shape, dtype)
    sharding = NamedSharding(devices.blocks_mesh(), PartitionSpec("blocks"))
    return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)()


def take(key: Hashable, make: Callable[[], object]):
    """The buffers kept under ``key``, or new ones from ``make()``; the caller owns them."""
    with _lock:
        buffers = _kept.pop(key, None)
    return make() if buffers is None else buffers


def keep(key: Hashable, buffers) -> None:
    """Keep ``buffers`` (returned by a compiled call) for the next :func:`take` of ``key``."""
    with _lock:
        _kept[key] = buffers
        _kept.move_to_end(key)
        while len(_kept) > MAX_KEPT:
            _kept.popitem(last=False)


def release() -> None:
    """Free every kept buffer."""
    with _lock:
        _kept.clear()

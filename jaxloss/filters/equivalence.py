"""Functional-equivalence classes (AutoML-Zero's trick): candidates that compute the same values
on a fixed probe set are evaluated once and share the result.

The probe set of a branch is 256 detection-like points (fixed seed). A candidate's *fingerprint* is
its probe values with the 12 lowest mantissa bits cleared (agreement to about 4e-4 relative), every
NaN made one NaN, ±inf kept, and |v| < 1e-4 made 0, hashed together. Like any rounding, two values
within tolerance can straddle a boundary and land in different classes: a missed merge costs one
extra evaluation, never a wrong result. Structurally different
formulas that are the same function (``x*2`` and ``x + x``, ``sigmoid(x)`` and ``1 - sigmoid(-x)``)
share a fingerprint; so can two functions that differ only off the probe set, which the 256
spread-out points make unlikely.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from jaxloss.engine.evaluate import evaluate
from jaxloss.genome.population import Population, as_population
from jaxloss.space import branches

PROBE_POINTS = 256
MANTISSA_BITS_DROPPED = 12
ABS_ZERO = 1e-4


@functools.lru_cache(maxsize=None)
def probe_inputs(branch: str, seed: int = 1234) -> dict[str, np.ndarray]:
    """The fixed probe points of a branch."""
    rng = np.random.default_rng(seed)
    n = PROBE_POINTS
    spec = branches.get(branch)
    if spec.class_axis:
        k = 4
        return {"x": (rng.normal(0, 4, (n, k))).astype(np.float32),
                "y": np.eye(k, dtype=np.float32)[rng.integers(0, k, n)],
                "w": rng.uniform(0, 1, n).astype(np.float32)}
    if spec.name == "cls_binary":
        return {"x": rng.normal(0, 4, n).astype(np.float32),
                "y": rng.integers(0, 2, n).astype(np.float32),
                "w": rng.uniform(0, 1, n).astype(np.float32)}
    side = np.exp(rng.uniform(np.log(4), np.log(512), n))
    u = (side ** 2 * rng.uniform(1.0, 2.0, n)).astype(np.float32)
    i = (u * rng.uniform(0.0, 1.0, n)).astype(np.float32)
    e = (u * rng.uniform(1.0, 3.0, n)).astype(np.float32)
    return {"i": i, "u": u, "e": e}


def quantize(values: np.ndarray) -> np.ndarray:
    """float32 values → uint32 keys, equal for values within about 4e-4 relative (or both below
    ABS_ZERO in magnitude)."""
    v = np.asarray(values, np.float32).copy()
    v[np.abs(v) < ABS_ZERO] = 0.0
    v[np.isnan(v)] = np.nan
    bits = v.view(np.uint32) & np.uint32((0xFFFFFFFF << MANTISSA_BITS_DROPPED) & 0xFFFFFFFF)
    bits[np.isnan(v)] = np.uint32(0x7FC00000)
    return bits


def fingerprints(losses, branch: str | None = None) -> list[bytes]:
    """One 16-byte fingerprint per candidate (see the module docstring)."""
    pop = as_population(losses, branch)
    keys = quantize(evaluate(pop, **probe_inputs(pop.branch)))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in keys]


def classes(pop: "Population | list[bytes]") -> tuple[np.ndarray, np.ndarray]:
    """Equivalence classes of a population (or of the fingerprints of one).

    Returns:
      (representatives, inverse): indices [C] of the first member of each class, and for every
      candidate the index into ``representatives`` of its class ([P]), so that results computed
      for the representatives spread back with ``result[inverse]``.
    """
    prints = pop if isinstance(pop, list) else fingerprints(pop)
    first: dict[bytes, int] = {}
    inverse = np.empty(len(prints), np.int64)
    representatives: list[int] = []
    for k, fp in enumerate(prints):
        if fp not in first:
            first[fp] = len(representatives)
            representatives.append(k)
        inverse[k] = first[fp]
    return np.asarray(representatives, np.int64), inverse

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

A detector trains on a loss's *gradient*, not its value: losses that differ by a term without the
prediction in it (``FL`` and ``FL + 2*w``: y is a target, w the detached IoU) train identically,
yet compute different values. :class:`TrainingClasses` groups them: the derivative on the probe
set along a fixed random direction in the inputs the gradient flows through
(:data:`TRAINED_INPUTS`), compared within a tolerance (RTOL relative, or ABS_ZERO absolute) at
every point, and the same points where value and derivative are finite. Equal gradients give
equal directional derivatives; different gradients give equal ones only for directions in a set of
measure zero. A tolerance rather than a rounded hash, because derivatives carry more rounding than
values: the spellings ``i/u`` and ``u*i/(u*u)`` straddled a rounding boundary at one of the 256
points.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from jaxloss.engine import batched
from jaxloss.engine.evaluate import evaluate
from jaxloss.engine.inputs import leaf_table
from jaxloss.genome.population import Population, as_population, check_valid
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


TRAINED_INPUTS = {"cls": ("x",), "cls_binary": ("x",), "reg": ("i", "u", "e")}
"""The inputs a detector's gradient flows through, per branch: the logits x (y is a target and w
the detached IoU), or all three box areas (each depends on the predicted box)."""


@functools.lru_cache(maxsize=None)
def probe_direction(branch: str, seed: int = 4321) -> tuple[np.ndarray, np.ndarray, int]:
    """The probe set's leaf table, a fixed random direction in it (standard normal on the rows of
    :data:`TRAINED_INPUTS`, 0 elsewhere; both float32 [L, S]) and the number of classes."""
    spec = branches.get(branch)
    table = leaf_table(spec.name, probe_inputs(spec.name))
    rng = np.random.default_rng(seed)
    direction = np.zeros_like(table.values)
    for name in TRAINED_INPUTS[spec.name]:
        direction[spec.inputs.index(name)] = rng.normal(0, 1, table.values.shape[1])
    return table.values, direction.astype(np.float32), table.num_classes


def _values_and_derivatives(values, tangents):
    return values, tangents


def probe_derivatives(losses, branch: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Values and derivatives along :func:`probe_direction` on the probe set, float32 [P, N] each
    (forward mode, exact: the engine's ``jax.jvp`` of every node).

    Evaluated ``batched.MIN_BLOCK`` genomes at a time: one compiled program per branch and genome
    capacity, whatever the population size (the search calls this with many sizes, and every
    program a process compiles stays in its memory)."""
    pop = as_population(losses, branch)
    check_valid(pop)
    leaves, direction, num_classes = probe_direction(pop.branch)
    chunk = batched.MIN_BLOCK
    values = [np.zeros((0, leaves.shape[1] // num_classes), np.float32)]
    derivatives = [values[0]]
    for start in range(0, len(pop), chunk):
        part = pop[np.arange(start, min(start + chunk, len(pop)))]
        genomes, block = batched.padded(part, leaves.shape[1])
        v, d = batched.evaluate_population(
            genomes, leaves, direction, num_classes=num_classes, block=block,
            chunk=batched.DEFAULT_CHUNK, reduce=_values_and_derivatives,
            tangent_inputs=TRAINED_INPUTS[pop.branch])
        values.append(np.asarray(v)[: len(part)])
        derivatives.append(np.asarray(d)[: len(part)])
    return np.concatenate(values), np.concatenate(derivatives)


RTOL = 1e-3
"""Relative agreement of two derivatives that count as equal (float32 rounding of different
spellings is ~1e-6; losses that differ by less than this train alike anyway)."""


class TrainingClasses:
    """Groups losses that train a detector identically, first come first numbered.

    Two losses are in one class when their derivatives along :func:`probe_direction` agree at
    every probe point within ``RTOL`` relative or ``ABS_ZERO`` absolute, and are finite (value
    and derivative) at the same points. A loss joins the first class (in order of arrival) it
    agrees with; so the classes depend on the order the losses come in only where agreement is
    not transitive, a difference of about RTOL.
    """

    def __init__(self, branch: str):
        self.branch = branches.get(branch).name
        self.count = 0
        self._derivatives = np.zeros((0, 0), np.float32)  # [capacity, N]: each class's first loss
        self._finite = np.zeros((0, 0), bool)

    def __len__(self) -> int:
        return self.count

    def assign(self, losses) -> np.ndarray:
        """The class of each loss, int64 [P] (new classes are added as needed)."""
        values, derivatives = probe_derivatives(losses, self.branch)
        if not self.count:
            self._derivatives = np.zeros((8, derivatives.shape[1]), np.float32)
            self._finite = np.zeros((8, derivatives.shape[1]), bool)
        out = np.empty(len(values), np.int64)
        for k, (v, d) in enumerate(zip(values, derivatives)):
            finite = np.isfinite(v) & np.isfinite(d)
            d = np.where(finite, d, 0.0)
            known, known_finite = self._derivatives[: self.count], self._finite[: self.count]
            close = np.abs(known - d) <= np.maximum(
                RTOL * np.maximum(np.abs(known), np.abs(d)), ABS_ZERO)
            same = np.flatnonzero((known_finite == finite).all(1) & close.all(1))
            if same.size:
                out[k] = same[0]
                continue
            if self.count == len(self._derivatives):  # grow by doubling: amortised O(1) a class
                grow = ((0, self.count), (0, 0))
                self._derivatives = np.pad(self._derivatives, grow)
                self._finite = np.pad(self._finite, grow)
            self._derivatives[self.count], self._finite[self.count] = d, finite
            out[k] = self.count
            self.count += 1
        return out


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

"""``jaxloss.check``: the computational-validity and convergence-property filters (paper §3.2.2).

Every candidate is evaluated on its branch's fixed check points (:mod:`jaxloss.filters.grids`) with the
derivative along the prediction computed alongside in forward mode (exact, no finite differences),
and judged from a few measured quantities:

===================  ==========================================================================
reason               rejected when
===================  ==========================================================================
``invalid``          a value or derivative on the grid is NaN or ±inf
``not_monotonic``    (``cls``, ``cls_binary``) the loss rises along a positive-score sweep or falls
                     along a negative-score sweep by more than MONO_ATOL + MONO_RTOL·|value|
                     beyond the best value seen so far on that sweep
``inconsistent``     (``reg``) along a family of boxes moving away from the target, the loss falls
                     below the best (lowest-distance) value by more than that tolerance: it is not
                     lowest at the target, or not non-decreasing with distance
``flat``             along some curve the loss changes by less than FLAT_ATOL + FLAT_RTOL·scale
                     between its ends (scale: the largest |value| on that curve): it does not
                     respond to the prediction (or to the box) there
``not_convergent``   (``cls``, ``cls_binary``) |dL/dx| at the positive score x = 16 exceeds
                     GRAD_RTOL·max(1, max |dL/dx| on the sweep): the gradient does not vanish as
                     the positive score → +∞
===================  ==========================================================================

Reasons are tested in that order; the first that applies is reported. Tolerances allow float32
rounding (a few ulp of the values) and nothing that a real oscillation or bump would hide in.

Two passes in one compiled call: a *screen* on a subset of the points (1/8 of each curve, both ends
kept), then the full grid for the screen's survivors only. Every check is "for all points", so a
failure on the subset is a failure on the full grid: the verdict (passed or not) is exactly that of
the full grid. A candidate rejected by the screen reports the first reason found on the subset,
with the subset's measures (``measures["grid"]`` says which).
"""

from __future__ import annotations

import functools
import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxloss.engine import batched, scratch
from jaxloss.engine.inputs import leaf_table
from jaxloss.filters.grids import CheckGrid, check_grid
from jaxloss.genome.population import Population, as_population, check_valid
from jaxloss.space import branches

MONO_ATOL = 1e-6
MONO_RTOL = 1e-4
FLAT_ATOL = 1e-4
FLAT_RTOL = 1e-3
GRAD_RTOL = 1e-3
SCREEN_STRIDE = 8
FULL_GRID_BLOCK = 128
"""Genomes per block on the full grid (the screen uses the engine's block size): the screen's
survivors are few (0.2% of random candidates), and smaller blocks mean smaller buffers to allocate
for them; with every candidate on the full grid, 128 is as fast as 512 (measured on 2 cores)."""

REASONS = ("invalid", "flat", "not_monotonic", "not_convergent", "inconsistent", "not_learning")
"""Stable reason codes (``reason_code`` k + 1 is ``REASONS[k]``); the order of testing is
invalid, not_monotonic / inconsistent, flat, not_convergent, then (with ``simulate=True``)
not_learning."""
NOT_LEARNING = REASONS.index("not_learning") + 1

MEASURES = ("nonfinite", "worst_violation", "min_change", "flat_margin", "grad_end",
            "grad_scale")


@dataclass(frozen=True)
class Verdict:
    """The verdict on one candidate.

    Attributes:
      passed: True when no check rejected it.
      reason: None, or the first failed check (one of :data:`REASONS`).
      measures: the quantities behind the verdict: ``nonfinite`` (count of NaN/inf values and
        derivatives), ``worst_violation`` (largest monotonicity excess beyond tolerance; > 0 means
        violated), ``min_change`` (smallest |first - last value| of a curve), ``flat_margin``
        (smallest change beyond the flatness tolerance of its curve; < 0 means flat),
        ``grad_end`` (|dL/dx| at the positive end), ``grad_scale`` (max(1, max |dL/dx| on the
        positive sweeps)), ``grid`` ("screen" or "full": the points they were measured on); with
        the simulation, ``sim_score`` (NaN if not simulated) and ``sim_threshold``.
    """

    passed: bool
    reason: str | None
    measures: dict


class Verdicts(Sequence[Verdict]):
    """One verdict per candidate, backed by arrays.

    Attributes:
      passed: bool [P].
      reason_code: int32 [P]: 0 passed, k + 1 for ``REASONS[k]``.
      measures: name → float [P] (see :class:`Verdict`); ``screened``: bool [P], True where the
        verdict came from the screen.
      branch: the branch.
    """

    def __init__(self, reason_code: np.ndarray, measures: dict[str, np.ndarray],
                 screened: np.ndarray, branch: str):
        self.reason_code = np.asarray(reason_code, np.int32)
        self.passed = self.reason_code == 0
        self.measures = measures
        self.screened = np.asarray(screened, bool)
        self.branch = branch

    def __len__(self) -> int:
        return len(self.reason_code)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        code = int(self.reason_code[k])
        measures = {name: float(v[k]) for name, v in self.measures.items()}
        measures["grid"] = "screen" if self.screened[k] else "full"
        return Verdict(code == 0, None if code == 0 else REASONS[code - 1], measures)

    def __iter__(self) -> Iterator[Verdict]:
        return (self[k] for k in range(len(self)))

    @property
    def reasons(self) -> list[str | None]:
        return [None if c == 0 else REASONS[c - 1] for c in self.reason_code]

    def counts(self) -> dict[str, int]:
        """How many candidates passed and how many each reason rejected."""
        out = {"checked": len(self), "passed": int(self.passed.sum())}
        for k, name in enumerate(REASONS):
            n = int(np.sum(self.reason_code == k + 1))
            if n:
                out[name] = n
        return out


# ---------------------------------------------------------------------------------------------
# measures, computed per block inside the compiled call
# ---------------------------------------------------------------------------------------------

def _columns(a, idx) -> jax.Array:
    """``a[:, idx]`` for a static index array ``idx`` ([n, steps]): a slice when the indices are
    consecutive (every check grid lays its curves out so), a gather otherwise."""
    idx = np.asarray(idx)
    flat = idx.ravel()
    if flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size)):
        return lax.slice_in_dim(a, int(flat[0]), int(flat[0]) + flat.size, axis=1).reshape(
            (a.shape[0],) + idx.shape)
    return a[:, idx]


def _curve_measures(values, curves: tuple):
    """Monotonicity excess and flatness along every curve of a grid.

    values: [B, N]; curves: static tuples of (sample indices [n_curves, steps], direction), the
    direction -1 (must not increase) or +1 (must not decrease), every curve the same length.
    Returns, per candidate [B]: the worst excess over the monotone tolerance (> 0: violated), the
    smallest |first - last| over the curves, and the smallest flatness margin
    |first - last| - (FLAT_ATOL + FLAT_RTOL·max |value| on that curve) (< 0: flat). A curve moving
    the wrong way shows in the excess; the change only tells flat curves.

    The excess at step t is M[t] - min(M[0..t-1]) - tolerance with M = -direction·L: a running
    minimum, computed by one loop over the steps for all candidates and curves at once, on curves
    read as slices (``lax.cummin`` and a gather made the whole reduction of a block 2-3× slower
    on XLA CPU: 10 vs 4 ms for 512 candidates on 2,048 points). Bit for bit the same measures.
    """
    # M: [steps, B, all curves], oriented so that every curve must not increase
    M = jnp.concatenate([-direction * _columns(values, idx) for idx, direction in curves], axis=1)
    M = jnp.transpose(M, (2, 0, 1))

    def step(t, carry):
        best_before, worst = carry
        m = M[t]
        excess = m - best_before - (MONO_ATOL + MONO_RTOL * jnp.abs(m))
        return jnp.minimum(best_before, m), jnp.maximum(worst, excess)

    _, worst = lax.fori_loop(1, M.shape[0], step,
                             (M[0], jnp.full(M.shape[1:], -jnp.inf, M.dtype)))
    change = jnp.abs(M[0] - M[-1])
    margin = change - (FLAT_ATOL + FLAT_RTOL * jnp.abs(M).max(axis=0))
    return worst.max(axis=1), change.min(axis=1), margin.min(axis=1)


def _measures(values, tangents, *, curves: tuple, convergence: tuple, positive: tuple):
    """Per-candidate measures of one block, stacked as :data:`MEASURES` ([B, 6]); curves are
    static tuples of (sample indices, direction)."""
    finite = jnp.isfinite(values)
    if tangents is not None:
        finite &= jnp.isfinite(tangents)
    nonfinite = jnp.sum(~finite, axis=1).astype(values.dtype)
    safe = jnp.where(jnp.isfinite(values), values, 0.0)
    worst, min_change, flat_margin = _curve_measures(safe, curves)
    if tangents is not None and convergence:
        g = jnp.abs(jnp.where(jnp.isfinite(tangents), tangents, 0.0))
        grad_end = g[:, np.asarray(convergence)].max(axis=1)
        grad_scale = jnp.maximum(1.0, _columns(g, np.asarray(positive)[None]).max(axis=(1, 2)))
    else:
        grad_end = jnp.zeros_like(nonfinite)
        grad_scale = jnp.ones_like(nonfinite)
    return jnp.stack([nonfinite, worst, min_change, flat_margin, grad_end, grad_scale], axis=1)


def _reason_codes(m, property_reason: int, with_convergence: bool):
    """Reason code per candidate from the stacked measures [P, len(MEASURES)]."""
    nonfinite, worst, _, flat_margin, grad_end, grad_scale = (m[:, k] for k in range(6))
    code = jnp.zeros(m.shape[0], jnp.int32)
    if with_convergence:
        code = jnp.where(grad_end > GRAD_RTOL * grad_scale, 4, code)
    code = jnp.where(flat_margin < 0, 2, code)
    code = jnp.where(worst > 0, property_reason, code)
    return jnp.where(nonfinite > 0, 1, code)


@dataclass(frozen=True)
class _Prepared:
    """A check grid turned into engine inputs and a static per-block reduction."""

    leaves: np.ndarray
    tangents: np.ndarray | None
    num_classes: int
    reduce: object


def _tupled(a: np.ndarray):
    return tuple(map(tuple, a.tolist())) if a.ndim == 2 else tuple(a.tolist())


@functools.lru_cache(maxsize=None)
def _prepare(branch: str, stride: int) -> _Prepared:
    grid: CheckGrid = check_grid(branch)
    if stride > 1:
        grid = grid.subset(stride)
    table = leaf_table(branch, grid.inputs)
    tangents = None
    if grid.tangent is not None:
        spec = branches.get(branch)
        tangents = np.zeros_like(table.values)
        tangents[spec.inputs.index("x")] = grid.tangent.reshape(-1)
    curves = tuple((_tupled(idx), grid.directions[name]) for name, idx in grid.curves.items())
    positive = tuple(np.ravel(grid.curves["positive"]).tolist()) if "positive" in grid.curves \
        else ()
    reduce = functools.partial(_measures, curves=curves, convergence=_tupled(grid.convergence),
                               positive=positive)
    return _Prepared(table.values, tangents, table.num_classes, reduce)


@functools.partial(jax.jit, static_argnames=("chunk", "block", "use_screen"),
                   donate_argnames=("buffers",))
def _check_population(genomes: Population, screen_leaves, screen_tangents, full_leaves,
                      full_tangents, buffers, *, chunk: int, block: int, use_screen: bool):
    """Screen, then the full grid for the survivors (moved to the front, the rest given size 0 so
    their blocks run no chunk), in the engine buffers ``buffers`` ({"screen": ..., "full": ...},
    see :func:`_scratch`). Returns (reason codes [P], measures [P, 6], screened [P], the buffers
    for the next call)."""
    branch = genomes.branch
    screen, full = _prepare(branch, SCREEN_STRIDE), _prepare(branch, 1)
    property_reason = 5 if branch == "reg" else 3
    with_convergence = branch != "reg"
    common = dict(chunk=chunk,
                  tangent_inputs=() if branch == "reg" else ("x",))
    full_block = _full_grid_block(block)
    if not use_screen:
        m_full, scratch_full = batched.evaluate_population(
            genomes, full_leaves, full_tangents, scratch=buffers["full"],
            num_classes=full.num_classes, reduce=full.reduce, block=full_block, **common)
        return (_reason_codes(m_full, property_reason, with_convergence), m_full,
                jnp.zeros(len(genomes), bool), {"full": scratch_full})
    m_screen, scratch_screen = batched.evaluate_population(
        genomes, screen_leaves, screen_tangents, scratch=buffers["screen"],
        num_classes=screen.num_classes, reduce=screen.reduce, block=block, **common)
    code_screen = _reason_codes(m_screen, property_reason, with_convergence)
    rejected = code_screen > 0
    order = jnp.argsort(rejected, stable=True)
    survivors_first = dataclasses.replace(genomes[order],
                                          size=jnp.where(rejected, 0, genomes.size)[order])
    m_full, scratch_full = batched.evaluate_population(
        survivors_first, full_leaves, full_tangents,
        scratch=buffers["full"], num_classes=full.num_classes, reduce=full.reduce,
        block=full_block, **common)
    m_full = jnp.zeros_like(m_full).at[order].set(m_full)
    measures = jnp.where(rejected[:, None], m_screen, m_full)
    code = jnp.where(rejected, code_screen, _reason_codes(m_full, property_reason,
                                                          with_convergence))
    return code, measures, rejected, {"screen": scratch_screen, "full": scratch_full}


def _full_grid_block(block: int) -> int:
    return min(block, FULL_GRID_BLOCK)


def _scratch(branch: str, population: int, capacity: int, block: int, chunk: int,
             use_screen: bool) -> tuple:
    """(key, maker) of the engine buffers a check of this shape works in (jaxloss.scratch)."""
    passes = {"full": (_prepare(branch, 1), _full_grid_block(block))}
    if use_screen:
        passes["screen"] = (_prepare(branch, SCREEN_STRIDE), block)
    shapes = {name: batched.scratch_shape(p.leaves.shape, population, block=b, capacity=capacity,
                                         branch_name=branch, chunk=chunk)
              for name, (p, b) in passes.items()}
    with_tangents = passes["full"][0].tangents is not None

    def make():
        return {name: (scratch.zeros(shape, split=split),
                       scratch.zeros(shape, split=split) if with_tangents else None)
                for name, (shape, split) in shapes.items()}

    return ("check", branch, tuple(sorted(shapes.items()))), make


def check(losses, branch: str | None = None, *, simulate: bool = False, screen: bool = True,
          chunk: int = batched.DEFAULT_CHUNK) -> Verdicts:
    """Judge every candidate with the validity and convergence-property checks.

    Args:
      losses: a :class:`Population`, a :class:`Loss`, formula text, or a list of those.
      branch: needed only for formula text.
      simulate: also run the mini optimization simulation (:mod:`jaxloss.filters.minisim`) on the
        candidates that pass the property checks, one per class of functionally equivalent
        candidates (:mod:`jaxloss.filters.equivalence`), and reject those that do not learn
        (``not_learning``; measures ``sim_score``, ``sim_threshold``).
      screen: screen on a subset first (default); False checks every candidate on the full grid
        (same verdicts, reasons and measures from the full grid, slower).

    Returns:
      :class:`Verdicts`: one :class:`Verdict` per candidate (``.passed``, ``.reason``,
      ``.measures``), plus array views and ``counts()`` for funnel statistics.
    """
    pop: Population = as_population(losses, branch)
    check_valid(pop)
    sub, full = _prepare(pop.branch, SCREEN_STRIDE), _prepare(pop.branch, 1)
    genomes, block = batched.padded(pop, full.leaves.shape[1])
    key, make = _scratch(pop.branch, len(genomes), pop.capacity, block, chunk, screen)
    code, measures, screened, buffers = _check_population(
        genomes, sub.leaves, sub.tangents, full.leaves, full.tangents, scratch.take(key, make),
        chunk=chunk, block=block, use_screen=screen)
    scratch.keep(key, buffers)
    n = len(pop)
    code = np.array(code[:n])
    measures = np.asarray(measures[:n])
    named = {name: measures[:, k] for k, name in enumerate(MEASURES)}
    if simulate:
        _simulate_survivors(pop, code, named, chunk)
    return Verdicts(code, named, np.asarray(screened[:n]), pop.branch)


def _simulate_survivors(pop: Population, code: np.ndarray, measures: dict, chunk: int) -> None:
    """Run the mini simulation on the property survivors (one per equivalence class), in place:
    rejected candidates get NOT_LEARNING, everyone gets ``sim_score`` (NaN where not simulated)."""
    from jaxloss.filters import minisim

    survivors = np.flatnonzero(code == 0)
    score = np.full(len(pop), np.nan, np.float32)
    limit = minisim.threshold(pop.branch)
    if survivors.size:
        score[survivors], learned, _ = minisim.simulate_by_class(pop.numpy()[survivors],
                                                                 chunk=chunk)
        code[survivors[~learned]] = NOT_LEARNING
    measures["sim_score"] = score
    measures["sim_threshold"] = np.full(len(pop), limit, np.float32)


# ---------------------------------------------------------------------------------------------
# the same verdict from values computed elsewhere (NumPy), for baselines and cross-checks
# ---------------------------------------------------------------------------------------------

def grid_inputs(branch: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The full check grid's inputs and derivative direction (for evaluating a loss elsewhere)."""
    grid = check_grid(branch)
    return grid.inputs, grid.tangent


def _measures_numpy(values: np.ndarray, derivatives, *, curves, convergence, positive):
    """NumPy twin of :func:`_measures` for one candidate (values, derivatives [N])."""
    finite = np.isfinite(values)
    if derivatives is not None:
        finite &= np.isfinite(derivatives)
    safe = np.where(np.isfinite(values), values, 0.0)
    worst, min_change, flat_margin = -np.inf, np.inf, np.inf
    for idx, direction in curves:
        L = safe[np.asarray(idx)]
        M = -direction * L
        best_before = np.minimum.accumulate(M, axis=1)[:, :-1]
        excess = M[:, 1:] - best_before - (MONO_ATOL + MONO_RTOL * np.abs(L[:, 1:]))
        change = np.abs(M[:, 0] - M[:, -1])
        worst = max(worst, float(excess.max()))
        min_change = min(min_change, float(change.min()))
        flat_margin = min(flat_margin, float(
            (change - (FLAT_ATOL + FLAT_RTOL * np.abs(L).max(axis=1))).min()))
    grad_end, grad_scale = 0.0, 1.0
    if derivatives is not None and convergence:
        g = np.abs(np.where(np.isfinite(derivatives), derivatives, 0.0))
        grad_end = float(g[np.asarray(convergence)].max())
        grad_scale = max(1.0, float(g[np.asarray(positive)].max()))
    return np.array([np.sum(~finite), worst, min_change, flat_margin, grad_end, grad_scale],
                    np.float64)


def _as_float32(a) -> np.ndarray:
    """float32 like the engine (values beyond its range become ±inf, as they would there)."""
    with np.errstate(over="ignore"):
        return np.asarray(a, np.float32)


def verdict_from_values(values: np.ndarray, derivatives: np.ndarray | None,
                        branch: str) -> tuple[str | None, dict]:
    """The full-grid verdict of one loss from its values [N] and derivatives [N] on the grid of
    :func:`grid_inputs`, with the same measures and tolerances as :func:`check` (in NumPy: for
    baselines that evaluate losses one by one, and for cross-checking the batched path)."""
    full = _prepare(branch, 1)
    m = _measures_numpy(_as_float32(values), None if derivatives is None or
                        branch == "reg" else _as_float32(derivatives),
                        **full.reduce.keywords)
    nonfinite, worst, _, flat_margin, grad_end, grad_scale = m
    code = 0
    if branch != "reg" and grad_end > GRAD_RTOL * grad_scale:
        code = 4
    if flat_margin < 0:
        code = 2
    if worst > 0:
        code = 5 if branch == "reg" else 3
    if nonfinite > 0:
        code = 1
    return (None if code == 0 else REASONS[code - 1],
            {name: float(m[k]) for k, name in enumerate(MEASURES)})

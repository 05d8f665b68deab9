"""The primitive operators of the search space (paper §3.1), defined once for every array library.

An operator's value is written as a pure function of an *array namespace* ``M`` (``jax.numpy``,
NumPy, or torch in ``bridge``) so that the batched JAX engine, the NumPy reference evaluator and the
PyTorch modules of ``bridge`` compute the very same formula with the very same guards
(:mod:`jaxloss.space.guards`).

Arrays: element-wise operators act on arrays of any shape. The two class-wise operators (softmax,
dot) act on the last axis, the class axis of the ``cls`` branch, whose arrays are ``[..., K]`` with
K = C + 1 classes (per-sample values are broadcast along it); dot returns its per-sample sum
broadcast back to ``[..., K]``.

Opcodes are stable integers: they are stored in genomes and checkpoints. Never renumber them; append.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from jaxloss.space import guards

SQRT_PI = math.sqrt(math.pi)


# ----------------------------------------------------------------------------------------------
# Operator values. ``M`` is an array namespace (see jaxloss.namespaces); ``a``, ``b`` are arrays.
# ----------------------------------------------------------------------------------------------

def _neg(M, a):
    return -a


def _exp(M, a):
    return M.exp(M.minimum(a, guards.EXP_MAX))


def _log(M, a):
    return M.log(a + guards.LOG_EPS)


def _abs(M, a):
    return M.abs(a)


def _sqrt(M, a):
    return M.sqrt(a)


def _softmax(M, a):
    shifted = a - M.max_last(a)
    e = M.exp(shifted)
    return e / M.sum_last(e)


def _softplus(M, a):
    # log(1 + exp(a)) as relu(a) + log1p(exp(-|a|)), which never overflows. Both kinks at 0 are
    # written with where() and the same side (a > 0 takes the right-hand branch of each), so that
    # their one-sided slopes add up to the true derivative σ(0) = 1/2 (max(a, 0) and |a| would give
    # JAX's tie slopes 1/2 and 1, hence 1/2 - 1/2 = 0). Same values as the max/abs form.
    positive = a > 0
    return M.where(positive, a, 0.0) + M.log1p(M.exp(M.where(positive, -a, a)))


def _sigmoid(M, a):
    return M.sigmoid(a)


def _gd(M, a):
    # Sgdf(a) = (1 + (2/π)·gd(π·a/4)) / 2 with gd(t) = 2·atan(tanh(t/2)): range (0, 1), slope 1/4
    # at 0. Computed as the identical (2/π)·atan(exp(π·a/4)), mirrored for a > 0, which has no
    # cancellation near 0 and 1 and finite derivatives everywhere. Both halves need atan(exp(-|z|))
    # (exp <= 1: M.arctan_unit, atan on [0, 1], applies; -|z| is written where(z < 0, z, -z)
    # so that the slope at 0 is the right-hand one, 1/4), computed once.
    z = (math.pi / 4.0) * a
    t = (2.0 / math.pi) * M.arctan_unit(M.exp(M.where(z < 0, z, -z)))
    return M.where(z < 0, t, 1.0 - t)


def _alf(M, a):
    # Salf(a) = (1 + h/sqrt(1 + h²)) / 2 with h = a/2: range (0, 1), slope 1/4 at 0. Computed through
    # the complement c = 1 - |h|/sqrt(1 + h²) in a form that neither cancels nor overflows:
    # c = 1/(s(s + t)) with s = sqrt(1 + t²) for t = |h| <= 1, and c = v²/(r(r + 1)) with v = 1/t,
    # r = sqrt(1 + v²) beyond; then Salf = c/2 for h < 0 and 1 - c/2 otherwise. Each branch reads t
    # clipped to its own side (no overflow in the branch not taken) with where(), not min/max, whose
    # slope 1/2 at the tie t = 1 would halve the derivative at a = ±2.
    h = 0.5 * a
    t = M.abs(h)
    inner = t <= 1.0
    ts = M.where(inner, t, 1.0)
    s = M.sqrt(1.0 + ts * ts)
    v = 1.0 / M.where(inner, 1.0, t)
    r = M.sqrt(1.0 + v * v)
    c = M.where(inner, 1.0 / (s * (s + ts)), v * v / (r * (r + 1.0)))
    return M.where(h < 0, 0.5 * c, 1.0 - 0.5 * c)


def _erf(M, a):
    # Serf(a) = (1 + erf(√π·a/4)) / 2 = erfc(-√π·a/4) / 2: range (0, 1), slope 1/4 at 0 (the erfc
    # form keeps its accuracy as the value approaches 0).
    return 0.5 * M.erfc(-(SQRT_PI / 4.0) * a)


def _erfc(M, a):
    # 1 - Serf(a) = erfc(√π·a/4) / 2: the release has no erfc; this is the re-scaled complement.
    return 0.5 * M.erfc((SQRT_PI / 4.0) * a)


def _tanh(M, a):
    # Beyond |a| = 1/2 as (1 - e)/(1 + e) with e = exp(-2|a|) (within 2 float32 ulp, and the same
    # formula in every library); below, each library's own tanh. XLA's CPU tanh is off by up to
    # 4 ulp and returns exactly ±1 from |a| = 7.9 on, where the float32 value is still 1 - 2e-7
    # (torch, the release: 1 ulp): downstream of a saturated tanh, log(tanh) or 1 - tanh are made
    # of those last ulps, and the engine and the bridge would disagree there.
    m = M.where(a > 0, -a, a)  # -|a|
    e = M.exp(2.0 * m)
    r = (1.0 - e) / (1.0 + e)  # tanh(|a|)
    return M.where(m > -0.5, M.tanh(a), M.where(a > 0, r, -r))


def _relu(M, a):
    return M.maximum(a, 0.0)


def _sin(M, a):
    return M.sin(a)


def _cos(M, a):
    return M.cos(a)


def _add(M, a, b):
    return a + b


def _sub(M, a, b):
    return a - b


def _mul(M, a, b):
    return a * b


def _div(M, a, b):
    # M.divide: the JAX namespace's forward-mode derivative stays finite next to the guard
    return M.divide(a, b + guards.DIV_EPS)


def _dot(M, a, b):
    return M.broadcast_like(M.sum_last(a * b), a * b)


# ----------------------------------------------------------------------------------------------
# The operator table.
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpSpec:
    """One node type of a loss graph.

    Attributes:
      code: stable opcode stored in genomes.
      name: the name in jaxloss' formula text (``str(loss)``); inputs and constants print as is.
      arity: 0 (input or constant), 1 or 2.
      fn: value function ``fn(M, *operands)`` (None for leaves).
      release: the operator's name in the published release's prefix notation (None if it has none).
      aliases: further names the parser accepts (case-insensitive for operators).
      commutative: operands may be swapped without changing the value (canonical form sorts them).
      class_wise: acts along the class axis (only in the ``cls`` branch).
      latex: LaTeX template with ``{0}``/``{1}`` for the operands.
    """

    code: int
    name: str
    arity: int
    fn: Callable | None = None
    release: str | None = None
    aliases: tuple[str, ...] = ()
    commutative: bool = False
    class_wise: bool = False
    latex: str = ""

    @property
    def is_leaf(self) -> bool:
        return self.arity == 0


NOP = 0
"""Opcode of an unused genome slot (padding beyond a candidate's node count)."""

_SPECS = [
    # leaves: inputs (1..6) and constants (7..9)
    OpSpec(1, "x", 0, latex="x"),
    OpSpec(2, "y", 0, latex="y"),
    OpSpec(3, "w", 0, latex="w"),
    OpSpec(4, "i", 0, latex="i"),
    OpSpec(5, "u", 0, latex="u"),
    OpSpec(6, "e", 0, latex="e"),
    OpSpec(7, "1", 0, latex="1"),
    OpSpec(8, "2", 0, latex="2"),
    OpSpec(9, "3", 0, latex="3"),
    # unary (16)
    OpSpec(10, "neg", 1, _neg, "Neg", latex="-{0}"),
    OpSpec(11, "exp", 1, _exp, "Exp", latex=r"\exp\left({0}\right)"),
    OpSpec(12, "log", 1, _log, "Log", ("ln",), latex=r"\log\left({0}\right)"),
    OpSpec(13, "abs", 1, _abs, "Abs", latex=r"\left|{0}\right|"),
    OpSpec(14, "sqrt", 1, _sqrt, "Sqrt", latex=r"\sqrt{{{0}}}"),
    OpSpec(15, "softmax", 1, _softmax, "Softmax", class_wise=True,
           latex=r"\mathrm{{softmax}}\left({0}\right)"),
    OpSpec(16, "softplus", 1, _softplus, "Softplus", latex=r"\mathrm{{softplus}}\left({0}\right)"),
    OpSpec(17, "sigmoid", 1, _sigmoid, "Sig", ("sigma", "σ"), latex=r"\sigma\left({0}\right)"),
    OpSpec(18, "gd", 1, _gd, "Sgdf", latex=r"\mathrm{{gd}}\left({0}\right)"),
    OpSpec(19, "alf", 1, _alf, "Salf", latex=r"\mathrm{{alf}}\left({0}\right)"),
    OpSpec(20, "erf", 1, _erf, "Serf", latex=r"\mathrm{{erf}}\left({0}\right)"),
    OpSpec(21, "erfc", 1, _erfc, "Serfc", latex=r"\mathrm{{erfc}}\left({0}\right)"),
    OpSpec(22, "tanh", 1, _tanh, "Tanh", latex=r"\tanh\left({0}\right)"),
    OpSpec(23, "relu", 1, _relu, "Relu", latex=r"\mathrm{{relu}}\left({0}\right)"),
    OpSpec(24, "sin", 1, _sin, "Sin", latex=r"\sin\left({0}\right)"),
    OpSpec(25, "cos", 1, _cos, "Cos", latex=r"\cos\left({0}\right)"),
    # binary (5)
    OpSpec(26, "add", 2, _add, "Add", commutative=True, latex="{0} + {1}"),
    OpSpec(27, "sub", 2, _sub, "Sub", latex="{0} - {1}"),
    OpSpec(28, "mul", 2, _mul, "Mul", commutative=True, latex=r"{0} \cdot {1}"),
    OpSpec(29, "div", 2, _div, "Div", latex=r"\frac{{{0}}}{{{1}}}"),
    OpSpec(30, "dot", 2, _dot, "Dot", commutative=True, class_wise=True,
           latex=r"\mathrm{{dot}}\left({0}, {1}\right)"),
]

OPS: dict[int, OpSpec] = {s.code: s for s in _SPECS}
"""All node types by opcode."""

BY_NAME: dict[str, OpSpec] = {s.name: s for s in _SPECS}
"""All node types by jaxloss name (``"x"``, ``"1"``, ``"exp"``, ``"add"``, ...)."""

NUM_OPCODES = max(OPS) + 1
UNARY = tuple(s.code for s in _SPECS if s.arity == 1)
BINARY = tuple(s.code for s in _SPECS if s.arity == 2)
OPERATORS = UNARY + BINARY
"""The 21 primitive operators of the paper (16 unary, 5 binary)."""

CONSTANTS = {BY_NAME["1"].code: 1.0, BY_NAME["2"].code: 2.0, BY_NAME["3"].code: 3.0}
INPUT_NAMES = ("x", "y", "w", "i", "u", "e")


def code(name: str) -> int:
    """Opcode of the node type called ``name`` in jaxloss' formula text."""
    return BY_NAME[name].code

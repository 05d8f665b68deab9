"""Every operator's derivative, in the JAX engine and in the PyTorch bridge, against a float64
central difference of an independent definition of the operator.

The definitions below (:data:`UNARY`, :data:`BINARY`, :func:`softmax_ref`, :func:`dot_ref`) are
written afresh in NumPy / SciPy float64 from the operators' meanings (paper §3.1, the release's
re-scaled S-curves and its guards as ``jaxloss.space.guards`` lists them), not from ``jaxloss.space.ops``. Each
engine differentiates the operator table as it does in use: JAX by ``jax.jvp`` of the operator's
function on the JAX namespace (what the engine's forward mode computes for every node), torch by
autograd of the same function on the bridge's torch namespace (what ``bridge.to_torch`` modules
call), in float64 (tight) and float32 (what the engine runs).

The grid has 0, ±1, the guards' thresholds (log and ÷ at 0 and just above their poles, exp around
its clamp at 88), the points where an operator's formula switches between two forms (alf at ±2,
gd where its arctan switches, sin and cos at multiples of π/4) and large magnitudes (±1e4, ±1e30).
The derivative is compared with a fourth-order central difference whose step is 1e-4 of the
point's own scale, so that it never straddles a kink (the scale of a guard's pole for log and ÷).

The only exceptions are the documented tie conventions (``jaxloss.space.guards``), where the derivative
must be exactly the documented value instead: |a|' = 1 at 0 (the difference gives 0), and the
slope 1/2 of relu at 0 and of exp's clamp at 88 (there the difference happens to agree).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps
import torch

import jaxloss
from bridge.namespace import TORCH
from jaxloss.engine.namespaces import JAX
from jaxloss.space import guards, ops
from tests.bridge.test_module import engine_derivatives

SQRT_PI = math.sqrt(math.pi)

UNARY = {
    "neg": lambda a: -a,
    "exp": lambda a: np.exp(np.minimum(a, 88.0)),
    "log": lambda a: np.log(a + 1e-20),
    "abs": np.abs,
    "sqrt": np.sqrt,
    "softplus": lambda a: np.logaddexp(0.0, a),
    "sigmoid": sps.expit,
    "gd": lambda a: 0.5 + (2 / np.pi) * np.arctan(np.tanh(np.pi * a / 8)),  # (1 + (2/π)·gd(πa/4))/2
    "alf": lambda a: 0.5 + 0.25 * a / np.sqrt(1 + (a / 2) ** 2),
    "erf": lambda a: 0.5 * (1 + sps.erf(SQRT_PI * a / 4)),
    "erfc": lambda a: 0.5 * sps.erfc(SQRT_PI * a / 4),
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "sin": np.sin,
    "cos": np.cos,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b + 1e-20),
}


def softmax_ref(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def dot_ref(a, b):
    return np.broadcast_to((a * b).sum(-1, keepdims=True), a.shape)


GRID = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1e-3, -1e-3, 10.0, -10.0, 30.0, -30.0, 1e4, -1e4,
        1e30, -1e30)
_GD_SWITCH = (4 / math.pi) * -math.log(math.tan(math.pi / 8))  # exp(-π|a|/4) = tan(π/8)
THRESHOLDS = {
    "log": (-guards.LOG_EPS / 2,),  # a + ε = ε/2 > 0, next to the pole at a = -ε
    "exp": (guards.EXP_MAX, guards.EXP_MAX - 0.1, guards.EXP_MAX + 0.1),
    "alf": (2.0, -2.0, 2.5, -1.5),
    "gd": (_GD_SWITCH, -_GD_SWITCH),
    "sin": tuple(k * math.pi / 4 for k in range(-3, 4)) + (9e4,),
    "cos": tuple(k * math.pi / 4 for k in range(-3, 4)) + (9e4,),
    "softplus": (20.0, -20.0, 88.0),
}
BEYOND = {"sin": 1e5, "cos": 1e5}
"""sin and cos are exact polynomials only for |a| <= 1e5 (jaxloss.trig); tests/engine/test_trig.py covers
what lies beyond."""
POLE_SCALE = {"log": guards.LOG_EPS}
"""At a = 0 the step is 1e-4 of this (default 1): log(a + 1e-20) bends on the scale of its ε."""
TIES = {
    ("abs", 0.0): 1.0,
    ("relu", 0.0): 0.5,
    ("exp", guards.EXP_MAX): 0.5 * math.exp(guards.EXP_MAX),
}
"""(operator, point) → the documented derivative at a tie (jaxloss.guards)."""

TOLERANCE = {np.float64: (1e-6, 1e-9), np.float32: (1e-4, 1e-6)}
"""(rtol, atol) of the derivative against the float64 difference."""


def central_difference(f, a, h):
    """Fourth-order central difference of f at a with step h (arrays)."""
    with np.errstate(all="ignore"):
        return (8 * (f(a + h) - f(a - h)) - (f(a + 2 * h) - f(a - 2 * h))) / (12 * h)


def jax_derivatives(fn, args, dtype):
    """[len(args)] derivatives of fn along each argument (jvp, as the engine's forward mode)."""
    with jax.enable_x64(dtype == np.float64):
        xs = tuple(jnp.asarray(a.astype(dtype)) for a in args)
        out = []
        for k in range(len(xs)):
            tangents = tuple(jnp.ones_like(x) if j == k else jnp.zeros_like(x)
                             for j, x in enumerate(xs))
            out.append(np.asarray(jax.jvp(fn, xs, tangents)[1], np.float64))
        return out


def torch_derivatives(fn, args, dtype):
    """[len(args)] gradients of sum(fn) (element-wise operators: the derivatives)."""
    ts = [torch.tensor(a.astype(dtype), requires_grad=True) for a in args]
    grads = torch.autograd.grad(fn(*ts).sum(), ts, allow_unused=True)
    return [np.zeros(args[0].shape) if g is None else g.numpy().astype(np.float64)
            for g in grads]


def compare(label, points, got, ref, value, dtype):
    """Indices where ``got`` disagrees with the difference ``ref``; points where the operator's
    value is NaN or not representable in ``dtype`` are left out (the validity check rejects
    those), and a reference beyond the dtype's range must come out as the same infinity."""
    rtol, atol = TOLERANCE[dtype]
    big = np.finfo(dtype).max
    bad = []
    for k in range(len(ref)):
        if not np.isfinite(value[k]) or abs(value[k]) > big:
            continue
        if not np.isfinite(ref[k]) or abs(ref[k]) > big:
            ok = np.isinf(got[k]) and (not np.isfinite(ref[k]) or np.sign(got[k]) == np.sign(ref[k]))
        else:
            ok = abs(got[k] - ref[k]) <= rtol * abs(ref[k]) + atol
        if not ok:
            bad.append(f"{label} at {points[k]}: {got[k]!r}, difference {ref[k]!r}")
    return bad


def unary_failures(name, dtype):
    spec = ops.BY_NAME[name]
    points = [p for p in GRID + THRESHOLDS.get(name, ()) if abs(p) < BEYOND.get(name, math.inf)]
    a = np.array(points, np.float64).astype(dtype).astype(np.float64)
    h = 1e-4 * np.where(a == 0, POLE_SCALE.get(name, 1.0), np.abs(a))
    if name in ("sin", "cos"):
        h = np.minimum(h, 1e-4)  # periodic: the scale is the period, not |a|
    ref = central_difference(UNARY[name], a, h)
    with np.errstate(all="ignore"):
        value = UNARY[name](a)
    bad = []
    for engine, got in (("jax", jax_derivatives(lambda t: spec.fn(JAX, t), [a], dtype)[0]),
                        ("torch", torch_derivatives(lambda t: spec.fn(TORCH, t), [a], dtype)[0])):
        for k, p in enumerate(points):
            if (name, p) in TIES:
                tie = TIES[name, p]
                if not math.isclose(got[k], tie, rel_tol=TOLERANCE[dtype][0]):
                    bad.append(f"{engine} {name}'({p}) = {got[k]!r}, documented tie {tie!r}")
                ref[k] = got[k]  # checked against the tie instead
        bad += compare(f"{engine} {name}'", points, got, ref, value, dtype)
    return bad


def binary_failures(name, dtype):
    spec = ops.BY_NAME[name]
    grid = (0.0, 1.0, -1.0, 0.5, -2.0, 1e-3, -30.0, 1e4, -1e30)
    divisors = (-guards.DIV_EPS / 2,) if name == "div" else ()  # b + ε = ε/2, next to the pole
    pairs = list(itertools.product(grid, grid + divisors))
    a = np.array([p[0] for p in pairs], np.float64).astype(dtype).astype(np.float64)
    b = np.array([p[1] for p in pairs], np.float64).astype(dtype).astype(np.float64)
    f = BINARY[name]
    # linear in each operand but a/(b + ε): steps on the scale of the larger operand (no
    # cancellation against it), and for ÷'s divisor on the scale of its distance to the pole
    h = 1e-4 * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)
    hb = 1e-4 * np.abs(b + guards.DIV_EPS) if name == "div" else h
    refs = [central_difference(lambda t: f(t, b), a, h),
            central_difference(lambda t: f(a, t), b, hb)]
    with np.errstate(all="ignore"):
        value = f(a, b)
    bad = []
    for engine, got in (("jax", jax_derivatives(lambda p, q: spec.fn(JAX, p, q), [a, b], dtype)),
                        ("torch", torch_derivatives(lambda p, q: spec.fn(TORCH, p, q), [a, b],
                                                    dtype))):
        for which, label in ((0, "∂a"), (1, "∂b")):
            bad += compare(f"{engine} {name} {label}", pairs, got[which], refs[which], value,
                           dtype)
    return bad


def class_wise_failures(name, dtype):
    """softmax and dot on [P, 4] rows, along each class of each operand (Jacobian columns)."""
    spec = ops.BY_NAME[name]
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.normal(0, 4, (6, 4)),
                           [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [30.0, -30.0, 0.0, 0.0],
                            [1e3, -1e3, 0.0, 5.0], [1e4, 1e4, -1e4, 2.0]]])
    a = rows.astype(dtype).astype(np.float64)
    b = np.roll(a, 1, axis=0) * 0.5 if name == "dot" else None
    args = [a] if b is None else [a, b]
    ref_fn = softmax_ref if name == "softmax" else dot_ref
    value = ref_fn(*args)
    bad = []
    for operand, j in itertools.product(range(len(args)), range(4)):
        e = np.zeros_like(a)
        e[:, j] = 1.0
        x = args[operand]
        # softmax bends on the scale of one logit; dot is linear (the larger the step, the less
        # cancellation against the other classes)
        h = np.full((len(x), 1), 1e-4) if name == "softmax" else \
            1e-4 * np.maximum(np.abs(x).max(-1, keepdims=True), 1.0)

        def along(t, operand=operand):
            moved = list(args)
            moved[operand] = x + t[:, None] * e
            return ref_fn(*moved)
        step = h[:, 0]
        with np.errstate(all="ignore"):
            ref = (8 * (along(step) - along(-step)) - (along(2 * step) - along(-2 * step))) / (
                12 * h)
        with jax.enable_x64(dtype == np.float64):
            xs = [jnp.asarray(v.astype(dtype)) for v in args]
            tangents = [jnp.asarray(e.astype(dtype)) if k == operand else jnp.zeros_like(v)
                        for k, v in enumerate(xs)]
            got_jax = np.asarray(jax.jvp(lambda *v: spec.fn(JAX, *v), xs, tangents)[1],
                                 np.float64)
        # torch.autograd.functional.jvp goes through the reverse-mode rules (double backward),
        # which are what the bridge's modules train with
        ts = tuple(torch.tensor(v.astype(dtype)) for v in args)
        vs = tuple(torch.tensor(e.astype(dtype)) if k == operand else torch.zeros_like(t)
                   for k, t in enumerate(ts))
        got_torch = torch.autograd.functional.jvp(lambda *v: spec.fn(TORCH, *v), ts, vs)[1]
        got_torch = got_torch.numpy().astype(np.float64)
        for engine, got in (("jax", got_jax), ("torch", got_torch)):
            bad += compare(f"{engine} {name} ∂{'ab'[operand]}[{j}]", [tuple(r) for r in
                           np.repeat(rows, 4, 0)], got.ravel(), ref.ravel(), value.ravel(),
                           dtype)
    return bad


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_every_operators_derivative_matches_a_central_difference(dtype):
    names = [ops.OPS[c].name for c in ops.OPERATORS]
    assert set(names) == set(UNARY) | set(BINARY) | {"softmax", "dot"}
    bad = []
    for name in names:
        if name in UNARY:
            bad += unary_failures(name, dtype)
        elif name in BINARY:
            bad += binary_failures(name, dtype)
        else:
            bad += class_wise_failures(name, dtype)
    assert not bad, "\n".join(bad[:40])


def test_softplus_slope_at_zero_is_one_half_in_the_engine_and_the_module():
    """The engine's own forward mode (float32, as the checks use it) and the torch module."""
    import bridge

    x = np.array([0.0, -1.0, 1.0], np.float32)
    inputs = dict(x=x, y=np.zeros(3, np.float32), w=np.ones(3, np.float32))
    pop = jaxloss.as_population(["softplus(x)"], "cls_binary")
    ones = {k: np.ones_like(v) for k, v in inputs.items()}
    got = engine_derivatives(pop, inputs, ones)["x"][0]
    want = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    t = torch.tensor(x, requires_grad=True)
    bridge.to_torch("softplus(x)", "cls_binary")(x=t, y=torch.zeros(3), w=torch.ones(3)).sum() \
        .backward()
    np.testing.assert_allclose(t.grad.numpy(), want, rtol=1e-6)
    assert got[0] == 0.5 and t.grad[0] == 0.5

"""``bridge.to_torch`` computes what ``jaxloss.engine.evaluate`` computes: values and gradients.

JAX references: values from the engine (``jaxloss.engine.evaluate``); gradients from JAX's reverse mode
(``jax.grad``) of the same graph walked with the same operator table (:func:`jax_loss_function`),
compared element by element with torch's; for the library losses also the engine's own
forward-mode derivatives (``batched.evaluate_population(..., leaf_tangents=v)``) along random
directions v. (Random formulas are not compared with the engine's forward mode: where a node's
derivative is infinite, e.g. sqrt at 0, forward mode multiplies it by a zero tangent and gets NaN,
0·∞, while reverse mode, in JAX as in torch, gives the finite partial derivatives.)

Tolerances (float32 on both sides):

* library losses, every point: |torch − JAX| ≤ 1e-5·|JAX| + 1e-6 for values, + 1e-6 × the largest
  |derivative| of that loss on the batch for derivatives (derivatives tiny next to the loss's own
  scale keep no relative accuracy in float32, so they are compared absolutely);
* random candidates: the same 1e-5 relative bound, widened by 10× the formula's own float32
  sensitivity at each point (:func:`float32_sensitivity`), at the regular points (see DEGENERATE),
  and at most ALLOWED_FRACTION of the samples may differ: random formulas contain
  cancellations (gd(z) → 0.5 − 0.5, a division by such a difference) where one ulp of difference
  between XLA's and ATen's exp/atan/erf changes the result completely. A wrong operator, a
  mis-wired operand or a wrong derivative rule changes nearly every point, so it cannot hide there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import bridge
import jaxloss
from jaxloss import LIBRARY
from jaxloss.engine import batched
from jaxloss.engine.inputs import leaf_table
from jaxloss.engine.namespaces import NUMPY
from jaxloss.genome.population import from_losses
from jaxloss.space import ops
from jaxloss.space.branches import BRANCHES
from tests.conftest import make_inputs

N = 64
CANDIDATES = 200
RTOL = 1e-5
ALLOWED_FRACTION = 0.05
"""Of the 64 samples of a random candidate, at most 3 may differ (in value, or in one input's
gradient). Seen in practice: a saturated tanh whose derivative 1 − tanh² cancels in float32 to a
few 1e-3 relative error in XLA but not in ATen; cancellations of two large chain-rule terms."""
DEGENERATE = 1e15
"""Gradients are compared at regular samples: the loss is finite, its float64 value and every
float64 partial derivative are below this in magnitude, and no guard or singularity is active
(:func:`guard_active`). Elsewhere a guard dominates (÷ (b + 1e-20) with b = 0, log(0 + 1e-20)) or
a derivative is infinite (sqrt at 0), and float32 products of intermediate derivatives under- or
overflow differently in each library; where the loss is NaN or inf its "derivative" is an artefact
of each library's conventions. The validity check rejects such formulas anyway."""


# ----------------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------------

def jax_loss_function(loss: jaxloss.Loss):
    """A plain JAX function of the inputs giving the per-sample values [N], from the loss graph
    and the operator table (as the engine computes each node), for jax.grad."""
    from jaxloss.engine.reference import jax_function

    return jax_function(loss)


def jax_values_and_gradients(loss, inputs: dict):
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()}
    values, pullback = jax.vjp(jax_loss_function(loss), arrays)
    (grads,) = pullback(jnp.ones_like(values))
    return np.asarray(values), {k: np.asarray(g) for k, g in grads.items()}


def _values_and_tangents(values, tangents):
    return values, tangents


def engine_derivatives(pop: jaxloss.Population, inputs: dict, directions: dict) -> dict:
    """{input: [P, N] derivative of every genome along directions[input]}: the engine's forward
    mode, one compiled call per input."""
    spec = BRANCHES[pop.branch]
    leaves = leaf_table(pop.branch, inputs)
    genomes, block = batched.padded(pop, leaves.values.shape[1])
    out = {}
    for name in spec.inputs:
        along = {n: (directions[n] if n == name else np.zeros_like(inputs[n])) for n in spec.inputs}
        tangent = leaf_table(pop.branch, along).values.copy()
        tangent[len(spec.inputs):] = 0  # the constants 1, 2, 3 do not move
        _, t = batched.evaluate_population(
            genomes, jnp.asarray(leaves.values), jnp.asarray(tangent),
            chunk=batched.DEFAULT_CHUNK, num_classes=leaves.num_classes, block=block,
            reduce=_values_and_tangents, tangent_inputs=(name,))
        out[name] = np.asarray(t[: len(pop)])
    return out


def torch_values_and_gradients(loss, inputs: dict, dtype=torch.float32):
    """Values [N] and {input: gradient of the summed loss, the input's shape} from bridge.to_torch."""
    module = bridge.to_torch(loss)
    tensors = {k: torch.tensor(np.asarray(v, np.float32), dtype=dtype, requires_grad=True)
               for k, v in inputs.items()}
    values = module(**tensors)
    if values.requires_grad:  # a formula of constants alone has no gradient
        values.sum().backward()
    grads = {k: (t.grad if t.grad is not None else torch.zeros_like(t)).numpy().astype(np.float64)
             for k, t in tensors.items()}
    return values.detach().numpy().astype(np.float64), grads


def random_directions(inputs: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=np.shape(v)).astype(np.float32) for k, v in inputs.items()}


def per_sample(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


def disagreement(ours32, torch32, torch64, atol, spread=None) -> np.ndarray:
    """Boolean, like the arguments: where JAX float32 and torch float32 disagree beyond the
    tolerance: 1e-5 relative + atol + 10× the float32 sensitivity ``spread`` there (default
    |torch32 − torch64|)."""
    ours32 = np.asarray(ours32, np.float64)
    finite = np.isfinite(torch64) & np.isfinite(torch32) & (np.abs(torch64) < 1e30)
    with np.errstate(invalid="ignore"):
        if spread is None:
            spread = np.abs(torch32 - torch64)
        spread = np.where(finite, spread, 0.0)
        close = np.abs(ours32 - torch32) <= 10 * spread + RTOL * np.abs(torch64) + atol
    return np.where(finite, ~close, np.isfinite(ours32) != np.isfinite(torch32))


PERTURBATIONS = (1 + 2.0 ** -21, 1 - 2.0 ** -21)


def float32_sensitivity(loss, inputs: dict):
    """The formula's own float32 error at each point: the largest |float32 − float64| of torch's
    values and gradients at the inputs and at the inputs scaled by 1 ± 2⁻²¹ (labels y kept), so
    that a cancellation that happens to round exactly at the inputs themselves is still seen."""
    spreads = None
    for factor in (1.0,) + PERTURBATIONS:
        moved = {k: (v if k == "y" else (np.asarray(v, np.float64) * factor).astype(np.float32))
                 for k, v in inputs.items()}
        v32, g32 = torch_values_and_gradients(loss, moved)
        v64, g64 = torch_values_and_gradients(loss, moved, torch.float64)
        with np.errstate(invalid="ignore"):
            now = {"value": np.abs(v32 - v64), **{k: np.abs(g32[k] - g64[k]) for k in g32}}
        now = {k: np.where(np.isfinite(a), a, 0.0) for k, a in now.items()}
        spreads = now if spreads is None else {k: np.maximum(spreads[k], now[k]) for k in now}
    return spreads


def guard_active(loss, inputs: dict, near: float = 1e-12) -> np.ndarray:
    """Boolean [N]: samples where a guard or a singularity is active in float64: a division by, a
    log of or a sqrt of something within ``near`` of 0. There derivatives are ±1e20-scale or
    infinite, and float32 intermediate products such as (b + 1e-20)² underflow differently in
    each library."""
    spec = BRANCHES[loss.branch]
    arrays = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    like = arrays["x"] if spec.class_axis else arrays[spec.inputs[0]][:, None]
    leaves = {ops.code(n): np.broadcast_to(arrays[n][:, None] if arrays[n].ndim == 1
                                           else arrays[n], like.shape) for n in spec.inputs}
    for code, value in ops.CONSTANTS.items():
        leaves[code] = np.full(like.shape, value)
    vals, active = [], np.zeros(like.shape[0], bool)
    with np.errstate(all="ignore"):
        for code, a, b in loss.graph:
            op = ops.OPS[code]
            if op.arity == 0:
                vals.append(leaves[code])
                continue
            touchy = {"div": b, "log": a, "sqrt": a}.get(op.name)
            if touchy is not None:
                active |= np.any(np.abs(vals[touchy]) < near, axis=-1)
            vals.append(np.asarray(op.fn(NUMPY, vals[a]) if op.arity == 1 else
                                   op.fn(NUMPY, vals[a], vals[b]), np.float64))
    return active


# ----------------------------------------------------------------------------------------------
# library losses: everywhere
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def library_on_the_engine(branch: str):
    """Inputs, directions, engine values and forward-mode derivatives of every library loss of a
    branch, as one population (one compilation per branch)."""
    names = [n for n, loss in LIBRARY.items() if loss.branch == branch]
    pop = jaxloss.as_population([LIBRARY[n] for n in names])
    inputs = make_inputs(branch, 256)
    directions = random_directions(inputs)
    return names, inputs, directions, jaxloss.evaluate(pop, **inputs), \
        engine_derivatives(pop, inputs, directions)


@pytest.mark.parametrize("name", list(LIBRARY))
def test_library_losses_match_jax_values_and_gradients(name):
    loss = LIBRARY[name]
    names, inputs, directions, values, derivs = library_on_the_engine(loss.branch)
    row = names.index(name)
    ours, grads = torch_values_and_gradients(loss, inputs)
    np.testing.assert_allclose(ours, values[row], rtol=RTOL, atol=1e-6, err_msg=f"{name} values")
    _, jax_grads = jax_values_and_gradients(loss, inputs)
    for k, g in grads.items():
        scale = max(np.max(np.abs(g)), 1e-30)
        np.testing.assert_allclose(g, jax_grads[k], rtol=RTOL, atol=1e-6 * scale,
                                   err_msg=f"{name}: ∂/∂{k} vs jax.grad")
        along = per_sample(g * directions[k]).sum(1)
        scale = max(np.max(np.abs(along)), 1e-30)
        np.testing.assert_allclose(along, derivs[k][row], rtol=RTOL, atol=1e-6 * scale,
                                   err_msg=f"{name}: ∂/∂{k} vs the engine's forward mode")


# ----------------------------------------------------------------------------------------------
# random candidates: at well-conditioned points
# ----------------------------------------------------------------------------------------------

def test_random_candidates_match_jax_values_and_gradients(branch):
    pop = jaxloss.sample(branch, CANDIDATES, seed=9, max_nodes=16)
    inputs = make_inputs(branch, N, seed=2)
    engine_values = jaxloss.evaluate(pop, **inputs)
    failures, compared = [], 0
    for k in range(len(pop)):
        loss = pop[k]
        v32, g32 = torch_values_and_gradients(loss, inputs)
        v64, g64 = torch_values_and_gradients(loss, inputs, torch.float64)
        jv, jg = jax_values_and_gradients(loss, inputs)
        spread = float32_sensitivity(loss, inputs)
        bad = {"value": disagreement(engine_values[k], v32, v64, 1e-6, spread["value"]),
               "value (jax.grad's trace)": disagreement(jv, v32, v64, 1e-6, spread["value"])}
        regular = np.isfinite(v32) & np.isfinite(engine_values[k]) & (np.abs(v64) < DEGENERATE)
        regular &= ~guard_active(loss, inputs)
        for name in g64:
            regular &= np.all(np.abs(per_sample(g64[name])) < DEGENERATE, axis=1)
        for name in g32:
            scale = max(np.max(np.abs(per_sample(g64[name])[regular]), initial=0.0), 1.0)
            off = disagreement(jg[name], g32[name], g64[name], 1e-6 * scale, spread[name])
            bad[f"∂/∂{name}"] = per_sample(off).any(axis=1) & regular
            compared += int(regular.sum())
        for what, where in bad.items():
            if where.mean() > ALLOWED_FRACTION:
                failures.append(f"{loss}: {what} differs at {int(where.sum())} of {N} samples")
    assert not failures, "\n".join(failures[:10])
    assert compared > 0.5 * CANDIDATES * N * len(BRANCHES[branch].inputs), \
        "too few regular points to compare gradients"


def test_every_operator_appears_among_the_random_candidates(branch):
    """The property test above covers the whole operator set of the branch."""
    pop = jaxloss.sample(branch, CANDIDATES, seed=9, max_nodes=16)
    used = {code for loss in pop.losses() for code, _, _ in loss.graph}
    assert set(BRANCHES[branch].operators) <= used


def test_ties_follow_jax_conventions():
    """|a|' = 1 at 0 and max(a, b)' = 1/2 at a = b, as in JAX (torch.abs / clamp would give 0):
    alf takes |·| of its argument, so alf'(0) = 1/4 needs it."""
    inputs = dict(x=np.zeros(3, np.float32), y=np.array([0, 1, 0], np.float32),
                  w=np.ones(3, np.float32))
    for text in ("alf(x)", "abs(x)", "relu(x)", "softplus(x)", "alf(y) * x"):
        loss = jaxloss.parse(text, "cls_binary")
        _, ours = torch_values_and_gradients(loss, inputs)
        _, theirs = jax_values_and_gradients(loss, inputs)
        for k in ours:
            np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, err_msg=f"{text} ∂/∂{k}")


# ----------------------------------------------------------------------------------------------
# the module's interface
# ----------------------------------------------------------------------------------------------

def test_to_torch_accepts_losses_genomes_names_and_text():
    a = bridge.to_torch(LIBRARY["CSE-Autoloss-A_cls"])
    b = bridge.to_torch(from_losses([LIBRARY["CSE-Autoloss-A_cls"]]))
    c = bridge.to_torch("CSE-Autoloss-A_cls")
    d = bridge.to_torch("Neg(Dot(Mul(Y,Add(1,Sin(Z))),Log(Softmax(X))))", "cls")
    assert a.loss == b.loss == c.loss == d.loss
    assert a.uses == {"x", "y", "w"} and bridge.to_torch("CE").uses == {"x", "y"}
    with pytest.raises(ValueError, match="branch"):
        bridge.to_torch("1 - i/u")
    with pytest.raises(ValueError, match="reg loss, not cls"):
        bridge.to_torch("GIoU", "cls")
    with pytest.raises(ValueError, match="one genome"):
        bridge.to_torch(jaxloss.sample("reg", 2, seed=0))
    assert str(bridge.to_torch("1 - i/u", "reg").loss) == "1 - i / u"


def test_bad_input_shapes_give_clear_errors():
    module = bridge.to_torch("CE")
    with pytest.raises(ValueError, match="missing w"):
        module(x=torch.zeros(3, 2), y=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"x \[N, K\]"):
        module(x=torch.zeros(3), y=torch.zeros(3), w=torch.zeros(3))


def test_float64_inputs_give_float64_values():
    out = bridge.to_torch("GIoU")(i=torch.ones(2, dtype=torch.float64),
                                  u=torch.full((2,), 2.0, dtype=torch.float64),
                                  e=torch.full((2,), 4.0, dtype=torch.float64))
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), 1 - 0.5 + 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(branch):
    pop = jaxloss.sample(branch, 50, seed=3, max_nodes=16)
    inputs = make_inputs(branch, N, seed=1)
    for k in range(len(pop)):
        module = bridge.to_torch(pop[k])
        cpu = {n: torch.tensor(v, dtype=torch.float32, requires_grad=True)
               for n, v in inputs.items()}
        gpu = {n: t.detach().cuda().requires_grad_() for n, t in cpu.items()}
        a, b = module(**cpu), module(**gpu)
        assert b.device.type == "cuda"
        close = np.isclose(b.detach().cpu().numpy(), a.detach().numpy(), rtol=1e-4, atol=1e-6,
                           equal_nan=True)
        assert close.mean() >= 1 - ALLOWED_FRACTION, f"{pop[k]}"

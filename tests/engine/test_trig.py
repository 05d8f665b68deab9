"""sin, cos and arctan from jaxloss.trig: accuracy against float64, edge values, derivatives, and
the same values in JAX, NumPy and PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloss.engine import trig
from jaxloss.engine.namespaces import JAX, NUMPY

F32_ULP_AT_1 = float(np.finfo(np.float32).eps)  # 1.19e-7


def _uniform(low, high, n=100_000, seed=0):
    return np.random.default_rng(seed).uniform(low, high, n).astype(np.float32)


def test_half_pi_parts_sum_to_half_pi_and_have_short_mantissas():
    c1, c2, c3, c4 = trig.HALF_PI_PARTS
    assert abs((c1 + c2 + c3 + c4) - np.pi / 2) < 1e-15
    for part in (c1, c2, c3):
        mantissa, _ = np.frexp(part)
        assert float(mantissa * 2 ** 8).is_integer(), part  # at most 8 significant bits
    assert np.float32(c4) == c4


@pytest.mark.parametrize("name", ["sin", "cos"])
@pytest.mark.parametrize("limit", [1.0, 100.0, 1e5])
def test_sin_cos_within_a_few_ulp_of_float64_in_the_exact_range(name, limit):
    a = _uniform(-limit, limit)
    exact = getattr(np, name)(a.astype(np.float64))
    ours = np.asarray(getattr(JAX, name)(jnp.asarray(a)), np.float64)
    libm = getattr(np, name)(a).astype(np.float64)
    assert np.max(np.abs(ours - exact)) <= 1.0 * F32_ULP_AT_1  # < one ulp of 1
    assert np.max(np.abs(ours - exact)) <= 2 * np.max(np.abs(libm - exact))


def test_sin_cos_edge_values():
    a = jnp.asarray([np.nan, np.inf, -np.inf, 1e30, -3e38, 0.0, np.pi / 2, -np.pi], jnp.float32)
    s, c = np.asarray(JAX.sin(a)), np.asarray(JAX.cos(a))
    assert np.all(np.isnan(s[:3])) and np.all(np.isnan(c[:3]))
    # far beyond the exact range: no longer libm's value, but bounded
    assert np.all(np.abs(s[3:5]) <= 1) and np.all(np.abs(c[3:5]) <= 1)
    np.testing.assert_allclose(s[5:], [0.0, 1.0, 0.0], atol=2e-7)
    np.testing.assert_allclose(c[5:], [1.0, 0.0, -1.0], atol=2e-7)


def test_arctan_unit_accuracy_on_the_unit_interval():
    t = np.concatenate([_uniform(0, 1), [0.0, trig.TAN_PI_8, 1.0]]).astype(np.float32)
    exact = np.arctan(t.astype(np.float64))
    ours = np.asarray(JAX.arctan_unit(jnp.asarray(t)), np.float64)
    assert np.max(np.abs(ours - exact)) <= F32_ULP_AT_1
    in_float64 = NUMPY.arctan_unit(t.astype(np.float64))
    assert np.max(np.abs(in_float64 - exact)) < 1e-8  # the series itself, not float32 rounding


@pytest.mark.parametrize("name,derivative", [("sin", np.cos), ("cos", lambda a: -np.sin(a))])
def test_sin_cos_derivatives(name, derivative):
    a = _uniform(-50, 50, 2000)
    fn = getattr(JAX, name)
    _, slope = jax.jvp(fn, (jnp.asarray(a),), (jnp.ones_like(jnp.asarray(a)),))
    np.testing.assert_allclose(np.asarray(slope), derivative(a.astype(np.float64)), atol=5e-7)


def test_arctan_unit_derivative():
    t = _uniform(0, 1, 2000)
    _, slope = jax.jvp(JAX.arctan_unit, (jnp.asarray(t),), (jnp.ones_like(jnp.asarray(t)),))
    np.testing.assert_allclose(np.asarray(slope), 1 / (1 + t.astype(np.float64) ** 2), rtol=5e-7)


def test_numpy_float32_and_torch_compute_the_same_values():
    torch = pytest.importorskip("torch")
    from bridge.namespace import TORCH

    a = _uniform(-1e4, 1e4, 10_000)
    t = _uniform(0, 1, 10_000)
    for name, x in (("sin", a), ("cos", a), ("arctan_unit", t)):
        ours = np.asarray(getattr(JAX, name)(jnp.asarray(x)))
        np.testing.assert_allclose(getattr(NUMPY, name)(x), ours, atol=2e-7, err_msg=name)
        theirs = getattr(TORCH, name)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(theirs, ours, atol=2e-7, err_msg=name)

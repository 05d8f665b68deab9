"""The batched engine against the one-at-a-time NumPy reference, and its robustness."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxloss
from jaxloss import LIBRARY, evaluate
from jaxloss.engine.reference import evaluate_one
from jaxloss.genome.population import Population, from_losses, validity_errors
from jaxloss.space import ops
from jaxloss.space.branches import BRANCHES
from tests.conftest import make_inputs

N = 128


def assert_matches_reference(values: np.ndarray, loss, inputs, allowed_fraction: float = 0.0):
    """Engine values agree with a float64 evaluation of the same float32 inputs.

    The tolerance is the formula's own float32 sensitivity at each point (how far a float32 NumPy
    evaluation strays from float64 there) plus a few ulp. Random formulas contain cancellations
    (gd(z) → 0.5 - 0.5 for z → -∞, a division by such a difference) where one ulp of difference
    between XLA's and NumPy's exp/atan/erf changes the result completely; ``allowed_fraction`` of
    the points may differ for that reason. A wrong operator or a mis-wired operand changes nearly
    every point, so it cannot hide in that allowance.
    """
    ref32 = evaluate_one(loss, np.float32, **inputs).astype(np.float64)
    ref64 = evaluate_one(loss, np.float64, **inputs)
    ours = values.astype(np.float64)
    both_finite = np.isfinite(ref32) & np.isfinite(ref64) & (np.abs(ref64) < 1e30)
    spread = np.where(both_finite, np.abs(ref32 - ref64), 0.0)
    tol = 10 * spread + 1e-5 * np.abs(ref64) + 1e-6
    agree = np.where(both_finite, np.abs(ours - ref64) <= tol,
                     np.isfinite(ours) == np.isfinite(ref32))
    bad = int(np.sum(~agree))
    assert bad <= allowed_fraction * len(agree), (
        f"{loss}: {bad} of {len(agree)} points differ, e.g. ours {ours[~agree][:3]} vs float64 "
        f"{ref64[~agree][:3]}")


@pytest.mark.parametrize("name", list(LIBRARY))
def test_library_losses_match_the_reference(name):
    loss = LIBRARY[name]
    inputs = make_inputs(loss.branch, N)
    (values,) = evaluate(loss, **inputs)
    assert values.shape == (N,)
    assert_matches_reference(values, loss, inputs)


def test_random_populations_match_the_reference(branch):
    pop = jaxloss.sample(branch, 200, seed=7, max_nodes=16)
    inputs = make_inputs(branch, N, seed=3)
    values = evaluate(pop, **inputs)
    assert values.shape == (200, N)
    for k in range(len(pop)):
        assert_matches_reference(values[k], pop[k], inputs, allowed_fraction=0.02)


def test_results_do_not_depend_on_batch_composition(branch):
    """Bit for bit: a genome's values never depend on its neighbours."""
    pop = jaxloss.sample(branch, 50, seed=11, max_nodes=16)
    inputs = make_inputs(branch, 64, seed=1)
    base = evaluate(pop, **inputs)
    np.testing.assert_array_equal(evaluate(pop[:7], **inputs), base[:7])
    np.testing.assert_array_equal(evaluate(pop[20], **inputs)[0], base[20])
    np.testing.assert_array_equal(evaluate(pop[::-1], **inputs), base[::-1])


def test_results_do_not_depend_on_chunk_size():
    """Bit for bit, also through the class-wise reductions of the cls branch."""
    pop = jaxloss.sample("cls", 50, seed=11, max_nodes=16)
    inputs = make_inputs("cls", 64, seed=1)
    base = evaluate(pop, **inputs)
    for chunk in (1, 32):
        np.testing.assert_array_equal(evaluate(pop, chunk=chunk, **inputs), base)


def test_per_class_root_is_summed_over_classes():
    inputs = make_inputs("cls", 16)
    summed, dotted = evaluate(["-y*log(softmax(x))", "-dot(y, log(softmax(x)))"], branch="cls",
                              **inputs)
    np.testing.assert_allclose(summed, dotted, rtol=1e-6)
    (w_only,) = evaluate("w", branch="cls", **inputs)
    np.testing.assert_allclose(w_only, inputs["w"])


def test_guards_behave_as_documented():
    inputs = dict(x=np.array([0.0, -1.0, 100.0], np.float32), y=np.zeros(3, np.float32),
                  w=np.zeros(3, np.float32))
    log_x, div, exp_x, sqrt_x = evaluate(["log(x)", "1/x", "exp(x)", "sqrt(x)"],
                                         branch="cls_binary", **inputs)
    np.testing.assert_allclose(log_x[0], np.log(np.float32(1e-20)), rtol=1e-6)
    assert np.isnan(log_x[1])
    np.testing.assert_allclose(div[0], 1e20, rtol=1e-6)
    np.testing.assert_allclose(exp_x[2], np.exp(np.float32(88.0)), rtol=1e-6)
    assert np.isnan(sqrt_x[1])


def test_s_curves_are_rescaled_to_the_unit_interval_with_slope_one_quarter():
    x = np.linspace(-30, 30, 2001).astype(np.float32)
    inputs = dict(x=x, y=np.zeros_like(x), w=np.zeros_like(x))
    names = ["sigmoid", "gd", "alf", "erf", "erfc"]
    values = evaluate([f"{n}(x)" for n in names], branch="cls_binary", **inputs)
    h = float(x[1] - x[0])
    mid = len(x) // 2
    for name, v in zip(names, values):
        assert v.min() >= 0 and v.max() <= 1, name
        slope = (v[mid + 1] - v[mid - 1]) / (2 * h)
        np.testing.assert_allclose(abs(slope), 0.25, rtol=1e-3, err_msg=name)


def test_bad_inputs_and_genomes_give_clear_errors():
    loss = LIBRARY["CE"]
    with pytest.raises(ValueError, match="missing w"):
        evaluate(loss, x=np.zeros((3, 2)), y=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x \\[N, K\\]"):
        evaluate(loss, x=np.zeros(3), y=np.zeros(3), w=np.zeros(3))
    with pytest.raises(ValueError, match="different branches"):
        evaluate([LIBRARY["CE"], LIBRARY["GIoU"]], x=np.zeros((3, 2)))
    pop = from_losses([LIBRARY["CE"]], 8).numpy()
    pop.lhs[0, 3] = 5  # points forward
    with pytest.raises(ValueError, match="earlier node"):
        evaluate(pop, **make_inputs("cls", 4))


def test_validity_errors_codes():
    good = from_losses([LIBRARY["GIoU"]], 12).numpy()
    assert validity_errors(good).tolist() == [0]
    cases = {
        1: lambda p: p.size.__setitem__(0, 13),
        2: lambda p: p.ops.__setitem__((0, 0), ops.code("x")),  # x is not a reg input
        3: lambda p: p.rhs.__setitem__((0, good.size[0] - 1), good.size[0] - 1),
        4: lambda p: p.ops.__setitem__((0, 11), ops.code("i")),
    }
    for code, corrupt in cases.items():
        p = Population(good.ops.copy(), good.lhs.copy(), good.rhs.copy(), good.size.copy(), "reg")
        corrupt(p)
        assert validity_errors(p).tolist() == [code]


@st.composite
def raw_genomes(draw, branch: str, capacity: int = 16, n: int = 32):
    """Structurally valid genomes drawn slot by slot, dead nodes and all."""
    spec = BRANCHES[branch]
    o = np.zeros((n, capacity), np.int32)
    a, b = np.zeros_like(o), np.zeros_like(o)
    size = np.zeros(n, np.int32)
    for k in range(n):
        size[k] = draw(st.integers(1, capacity))
        for j in range(size[k]):
            pool = spec.leaves if j == 0 else spec.codes
            code = draw(st.sampled_from(pool))
            o[k, j] = code
            arity = ops.OPS[code].arity
            if arity >= 1:
                a[k, j] = draw(st.integers(0, j - 1))
            if arity == 2:
                b[k, j] = draw(st.integers(0, j - 1))
    return Population(o, a, b, size, branch)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), branch=st.sampled_from(["cls", "cls_binary", "reg"]))
def test_evaluate_never_raises_on_a_valid_genome(data, branch):
    pop = data.draw(raw_genomes(branch))
    assert (validity_errors(pop) == 0).all()
    inputs = make_inputs(branch, 32, seed=5)
    values = evaluate(pop, **inputs)
    assert values.shape == (32, 32) and values.dtype == np.float32
    for k in data.draw(st.lists(st.integers(0, 31), min_size=1, max_size=3)):
        assert_matches_reference(values[k], pop[k], inputs, allowed_fraction=0.05)


def test_the_engine_never_imports_torch():
    code = "import jaxloss, sys; jaxloss.evaluate(jaxloss.LIBRARY['GIoU'], i=[1.], u=[2.], e=[3.]);" \
           " assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)

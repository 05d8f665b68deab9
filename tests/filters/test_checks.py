"""The validity and convergence-property filters, the simulation, equivalence classes and the funnel."""

from __future__ import annotations

import numpy as np
import pytest

import jaxloss
from jaxloss import LIBRARY, check
from jaxloss.engine.reference import evaluate_one
from jaxloss.filters import equivalence
from jaxloss.filters.checks import REASONS, grid_inputs, verdict_from_values
from jaxloss.filters.funnel import format_funnel, funnel
from tests.known_losses import BAD, GOOD


def test_every_library_loss_passes_all_filters_including_the_simulation(branch):
    losses = [l for l in LIBRARY.values() if l.branch == branch]
    verdicts = check(losses, simulate=True)
    for loss, v in zip(losses, verdicts):
        assert v.passed, f"{loss.name}: {v.reason} {v.measures}"
        assert v.measures["sim_score"] >= v.measures["sim_threshold"]


@pytest.mark.parametrize("branch", ["cls", "cls_binary", "reg"])
def test_known_good_losses_pass(branch):
    assert len(GOOD[branch]) >= 20
    verdicts = check([f for f, _ in GOOD[branch]], branch)
    failed = [(f, v.reason) for (f, _), v in zip(GOOD[branch], verdicts) if not v.passed]
    assert not failed


@pytest.mark.parametrize("branch", ["cls", "cls_binary", "reg"])
def test_known_bad_losses_fail_for_the_expected_reason(branch):
    assert len(BAD[branch]) >= 20
    verdicts = check([f for f, _, _ in BAD[branch]], branch)
    wrong = [(f, want, v.reason) for (f, want, _), v in zip(BAD[branch], verdicts)
             if v.reason != want]
    assert not wrong
    assert {v.reason for v in verdicts} <= set(REASONS)


def test_screen_gives_exactly_the_full_grid_verdict():
    pop = jaxloss.sample("cls_binary", 400, seed=21, max_nodes=12)
    screened, full = check(pop), check(pop, screen=False)
    np.testing.assert_array_equal(screened.passed, full.passed)
    assert screened.screened.any() and not full.screened.any()
    # where the screen did not decide, the full grid did, with the same measures
    both = ~screened.screened
    for name in ("nonfinite", "worst_violation", "grad_end"):
        np.testing.assert_allclose(screened.measures[name][both], full.measures[name][both])


@pytest.mark.parametrize("stride", [1, 8])
def test_block_measures_equal_their_numpy_twin_bit_for_bit(branch, stride):
    """The compiled per-block measures (running minimum by a loop over the steps, curves read
    as slices) against the NumPy twin (np.minimum.accumulate, fancy indexing) on values with
    non-finite entries, huge magnitudes, monotone and wiggly rows."""
    import jax

    from jaxloss.filters.checks import _measures_numpy, _prepare

    prepared = _prepare(branch, stride)
    n = prepared.leaves.shape[1]
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=(16, n)), axis=1).astype(np.float32)
    values[:4] = -np.sort(values[:4], axis=1)
    values[4] = np.linspace(0, 1, n)
    with np.errstate(over="ignore"):
        values[5] *= np.float32(1e37)  # some overflow to inf, the rest near the float32 limit
    values[6, 3], values[7, 5], values[8, -1] = np.nan, np.inf, -np.inf
    tangents = None if branch == "reg" else rng.normal(size=(16, n)).astype(np.float32)
    if tangents is not None:
        tangents[9, 0] = np.inf
    got = np.asarray(jax.jit(prepared.reduce)(values, tangents))
    want = np.stack([_measures_numpy(values[k], None if tangents is None else tangents[k],
                                     **prepared.reduce.keywords) for k in range(16)])
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_curve_measures_read_scattered_curves_too():
    """Curves whose points are not consecutive (no grid lays them out so today) go through a
    gather and give the same measures as the same curves laid out consecutively."""
    import jax

    from jaxloss.filters.checks import _curve_measures

    rng = np.random.default_rng(4)
    values = np.cumsum(rng.normal(size=(8, 40)), axis=1).astype(np.float32)
    scattered = np.array([[3, 9, 1, 30, 22], [5, 0, 7, 11, 38]], np.int32)
    packed = values[:, scattered.ravel()]
    curves_scattered = ((tuple(map(tuple, scattered.tolist())), -1),)
    curves_packed = ((tuple(map(tuple, np.arange(10).reshape(2, 5).tolist())), -1),)
    got = jax.jit(lambda v: _curve_measures(v, curves_scattered))(values)
    want = jax.jit(lambda v: _curve_measures(v, curves_packed))(packed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_batched_verdicts_match_one_by_one_evaluation(branch):
    """The batched check (full grid) against the NumPy reference evaluator + the NumPy twin of
    the verdict, with exact derivatives from the engine replaced by central differences in
    float64: they agree on the reason for nearly every random candidate (differences come from
    derivatives that are infinite at a point, which differences cannot see)."""
    pop = jaxloss.sample(branch, 120, seed=8, max_nodes=12)
    verdicts = check(pop, screen=False)
    inputs, _ = grid_inputs(branch)
    agree = 0
    for k in range(len(pop)):
        values = evaluate_one(pop[k], np.float64, **inputs)
        grad = None
        if branch != "reg":
            h = 1e-3
            tangent = inputs["y"] if branch == "cls" else 1.0
            up = dict(inputs, x=inputs["x"] + h * tangent)
            down = dict(inputs, x=inputs["x"] - h * tangent)
            grad = (evaluate_one(pop[k], np.float64, **up)
                    - evaluate_one(pop[k], np.float64, **down)) / (2 * h)
        reason, _ = verdict_from_values(values, grad, branch)
        agree += reason == verdicts[k].reason
    assert agree >= 0.9 * len(pop)


def test_verdict_fields_and_counts():
    verdicts = check(["x", "-log(sigmoid(x))*y - log(1 - sigmoid(x))*(1 - y)"], "cls_binary")
    bad, good = verdicts
    assert not bad.passed and bad.reason == "not_monotonic" and bad.measures["worst_violation"] > 0
    assert good.passed and good.reason is None and good.measures["nonfinite"] == 0
    assert verdicts.counts() == {"checked": 2, "passed": 1, "not_monotonic": 1}
    assert len(verdicts[0:2]) == 2 and list(verdicts)[1] == good


def test_simulation_rejects_losses_that_do_not_learn():
    # monotone and convergent on the check grid, but with a vanishing gradient almost everywhere:
    # relu(-x - 15) only teaches positives scored below -15, and never pushes negatives down
    weak = "y*relu(-x - 3*3 - 3*2) + (1 - y)*relu(x - 3*3 - 3*2)"
    verdicts = check([weak, "-(y*log(sigmoid(x)) + (1 - y)*log(1 - sigmoid(x)))"], "cls_binary",
                     simulate=True)
    assert verdicts[0].reason == "not_learning", verdicts[0].measures
    assert verdicts[1].passed


def test_simulation_scores_are_deterministic():
    a = jaxloss.simulate([LIBRARY["GIoU"], LIBRARY["IoU"]])
    b = jaxloss.simulate([LIBRARY["IoU"], LIBRARY["GIoU"]])
    np.testing.assert_array_equal(a.score, b.score[::-1])
    assert a.learned.all() and not a.diverged.any()


def test_equivalent_formulas_share_a_class():
    pop = jaxloss.as_population(["x*2", "x + x", "x*y", "y*x", "exp(x)", "exp(x) + (1 - 1)*x"],
                                "cls_binary")
    representatives, inverse = equivalence.classes(pop)
    assert inverse[0] == inverse[1] and inverse[2] == inverse[3] and inverse[4] == inverse[5]
    assert len(representatives) == 3
    assert np.array_equal(representatives[inverse][[0, 2, 4]], [0, 2, 4])


@pytest.mark.parametrize("branch, same, other", [
    ("cls_binary", ["FL", "FL + 2*w", "FL - y*3", "FL * 1"], ["FLI", "2 * FL", "BCE"]),
    ("cls", ["CE", "CE + w", "CE - 1"], ["CEI", "2 * CE"]),
    ("reg", ["IoU", "IoU + 3", "(u - i)/u"], ["GIoU", "2 * IoU"]),
])
def test_training_classes_merge_losses_with_the_same_gradient(branch, same, other):
    """A term without the prediction in it (a constant, y, the detached IoU w) changes the value,
    not the gradient, so not the training; a scale or a different loss does."""
    def text(name):
        return " ".join(f"({LIBRARY[t]})" if t in LIBRARY else t for t in name.split())

    losses = [text(t) for t in same + other]
    classes = equivalence.TrainingClasses(branch)
    train = classes.assign(losses)
    value = equivalence.fingerprints(losses, branch)
    assert train.tolist() == [0] * len(same) + list(range(1, 1 + len(other)))
    assert len(set(value[: len(same)])) > 1  # their values differ: only the gradient merges them
    # classes carry over from call to call: later losses join the classes already there
    assert classes.assign([losses[-1], losses[0]]).tolist() == [len(other), 0]
    assert len(classes) == 1 + len(other)


def test_training_classes_survive_the_rounding_of_different_spellings():
    """Spellings of one function whose derivatives differ in the last bits (a hash of rounded
    values split ``i/u`` and ``u*i/(u*u)`` at one of 256 points) and random samples against
    themselves respelled: one class each."""
    spelled = ["1 - i/u", "1 - u*i/(u*u)", "1 - (i*3)/(u*3)", "(u - i)/u", "1 - i*(1/u)"]
    assert equivalence.TrainingClasses("reg").assign(spelled).tolist() == [0] * len(spelled)
    pop = jaxloss.sample("cls_binary", 200, seed=5, max_nodes=12)
    texts = [str(l) for l in pop.losses()]
    doubled = [f"({t}) * 2 / 2" for t in texts]
    classes = equivalence.TrainingClasses("cls_binary")
    first, second = classes.assign(texts), classes.assign(doubled)
    finite = np.isfinite(equivalence.probe_derivatives(texts, "cls_binary")[1]).all(1)
    assert (first == second)[finite].mean() >= 0.99


def test_probe_derivatives_are_the_derivatives_along_the_probe_direction():
    values, derivatives = equivalence.probe_derivatives(["x * x", "exp(x)", "y * x"],
                                                        "cls_binary")
    leaves, direction, _ = equivalence.probe_direction("cls_binary")
    x, y, d = leaves[0], leaves[1], direction[0]
    np.testing.assert_allclose(values[0], x * x, rtol=1e-6)
    np.testing.assert_allclose(derivatives[0], 2 * x * d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(derivatives[1], np.exp(x) * d, rtol=1e-5)
    np.testing.assert_allclose(derivatives[2], y * d, rtol=1e-6)
    assert not direction[1:].any()  # y, w and the constants: no gradient flows through them


def test_funnel_counts_add_up():
    pop = jaxloss.sample("reg", 300, seed=2, max_nodes=10)
    verdicts = check(pop, simulate=True)
    rows = funnel(verdicts)
    assert [r["stage"] for r in rows] == ["validity", "property", "simulation"]
    assert rows[0]["in"] == 300
    for before, after in zip(rows, rows[1:]):
        assert after["in"] == before["out"]
    for r in rows:
        assert r["in"] - r["out"] == sum(r["rejected"].values())
    assert rows[-1]["out"] == int(verdicts.passed.sum())
    assert "validity" in format_funnel(rows)

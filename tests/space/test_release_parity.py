"""jaxloss and the bridge against the official CSE-Autoloss release.

The release (github.com/PerdonLiu/CSE-Autoloss, commit b08ec06, an MMDetection 2.8 fork) is not a
dependency. What it computes is rewritten below, afresh and in plain torch on the CPU (it runs its
operators on CUDA through DEAP), each piece citing the release's file and lines:

* its operators (``tools/search_space.py``) and operator sets;
* its input feeding and reductions (``tools/get_loss.py``, and ``weight_reduce_loss`` of its
  ``mmdet/models/losses/utils.py``);
* the box-loss arithmetic of its FCOS and ATSS heads (``mmdet/models/dense_heads/fcos_head.py``,
  ``atss_head.py``) with its IoU (``mmdet/core/bbox/iou_calculators/iou2d_calculator.py``).

The release computes in float32. Our values are compared with the release's formulas evaluated in
float64 (its definitions, exactly) and, on moderate inputs, in float32 (what it actually computed);
our float32 values may differ from float64 only by float32 rounding. Documented differences, each
asserted to be what it is said to be:

* derivatives at ties (``jaxloss.space.guards``): |a|'(0) = 1 (release 0), relu'(0) = 1/2 (release 0),
  exp'(88) = e⁸⁸/2 at its clamp (release e⁸⁸);
* operator sets: the ``reg`` branch is the release's; ``cls`` adds erfc (the paper lists it, the
  release lacks it); ``cls_binary`` adds erfc and drops softmax (there is no class axis for it);
* the per-sample box-loss weighting of ``SearchedLoss`` (the release's arithmetic is
  ``release_weighting=True``) and pixel box units in ``IoUFCOSHead`` (the release's are
  ``box_units='stride'``).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bridge
import bridge.mmdet  # noqa: F401  (SearchedLoss)
import jaxloss
from jaxloss import BRANCHES

# ----------------------------------------------------------------------------------------------
from jaxloss.space import ops

# The release's operators, rewritten from tools/search_space.py (line numbers of that file)
# ----------------------------------------------------------------------------------------------

RELEASE_EPS = 1e-20  # line 7: the ε of Log and Div


def r_log(a):  # lines 158-161: log(a + ε)
    return torch.log(a + RELEASE_EPS)


def r_div(a, b):  # lines 168-172: a / (b + ε)
    return a / (b + RELEASE_EPS)


def r_exp(a):  # lines 174-179: the input clamped at 88 from above
    return torch.exp(torch.clamp(a, max=88.0))


def r_serf(a):  # lines 191-197: (1 + erf(√π/2 · a/2)) / 2
    return (torch.erf(math.sqrt(math.pi) / 2 * a / 2) + 1) / 2


def r_salf(a):  # lines 199-204: h = a/2; (1 + h/√(1 + h²)) / 2
    h = a / 2
    return (h / torch.sqrt(1 + h ** 2) + 1) / 2


def r_sgdf(a):  # lines 206-213: t = πa/4; g = 2·atan(tanh(t/2)); (1 + 2g/π) / 2
    t = a * math.pi / 4
    g = 2 * torch.atan(torch.tanh(t / 2))
    return (g * 2 / math.pi + 1) / 2


def r_softmax(a):  # lines 235-238: over dim 1, the class axis
    return torch.softmax(a, dim=1)


def r_dot(a, b):  # lines 124-132: the product summed over dim 1 (per sample)
    return (a * b).sum(dim=1)


RELEASE_OPS = {  # the release's name → its function (prefix notation of its published losses)
    "Neg": lambda a: -a,  # 163-166
    "Exp": r_exp,
    "Log": r_log,
    "Abs": torch.abs,  # 181-184
    "Sqrt": torch.sqrt,  # 147-150
    "Softmax": r_softmax,
    "Softplus": lambda a: F.softplus(a, beta=1),  # 240-243
    "Sig": torch.sigmoid,  # 186-189
    "Sgdf": r_sgdf,
    "Salf": r_salf,
    "Serf": r_serf,
    "Tanh": torch.tanh,  # 215-218
    "Relu": torch.relu,  # 220-223
    "Sin": torch.sin,  # 225-228
    "Cos": torch.cos,  # 230-233
    "Add": lambda a, b: a + b,  # 135-139
    "Sub": lambda a, b: a - b,  # 141-145
    "Mul": lambda a, b: a * b,  # 152-156
    "Div": r_div,
    "Dot": r_dot,
}

RELEASE_SETS = {  # the operators each pset adds (get_*_pset)
    "cls": {"Neg", "Exp", "Log", "Abs", "Sqrt", "Softmax", "Softplus", "Sig", "Sgdf", "Salf",
            "Serf", "Tanh", "Sin", "Cos", "Relu", "Add", "Sub", "Mul", "Div", "Dot"},  # 53-88
    "cls_binary": {"Neg", "Exp", "Log", "Abs", "Sqrt", "Softmax", "Softplus", "Sig", "Sgdf",
                   "Salf", "Serf", "Tanh", "Sin", "Cos", "Relu", "Add", "Sub", "Mul",
                   "Div"},  # 21-51
    "reg": {"Add", "Sub", "Mul", "Neg", "Log", "Exp", "Div", "Abs", "Sqrt", "Softplus", "Sig",
            "Tanh", "Relu", "Sin", "Cos"},  # 90-116
}

# The four published losses in the release's prefix notation (its README.md, lines 22, 28, 36, 42)
PUBLISHED = {
    "CSE-Autoloss-A_cls": "Neg(Dot(Mul(Y,Add(1,Sin(Z))),Log(Softmax(X))))",
    "CSE-Autoloss-A_reg": "Add(1,Neg(Add(Div(I,U),Neg(Div(Add(E,Neg(Add(I,2))),E)))))",
    "CSE-Autoloss-B_cls": "Neg(Add(Mul(Q,Mul(Add(1,Serf(Sig(NY))),Log(Sig(X)))),Mul(Add(Sgdf(X),"
                          "Neg(Q)),Mul(Add(Add(1,Neg(Q)),Neg(Add(1,Neg(Sig(X))))),Log(Add(1,"
                          "Neg(Sig(X))))))))",
    "CSE-Autoloss-B_reg": "Neg(Div(Add(Div(Neg(Add(Neg(E),Add(1,I))),Neg(Add(3,Add(2,U)))),Add("
                          "Div(E,E),Div(Neg(E),Neg(1)))),Neg(Add(Div(Neg(Add(U,Div(I,1))),Neg(3)),"
                          "Neg(E)))))",
}


def release_function(prefix: str):
    """``f(**inputs)`` computing a prefix string with the release's operators (what DEAP's
    ``gp.compile`` builds from it, ``tools/get_loss.py`` line 5): a small recursive reader, no
    ``eval``. Whole numbers are constants; other names are inputs."""
    tokens = re.findall(r"[A-Za-z]+|\d+|[(),]", prefix)

    def node(k):
        name = tokens[k]
        if k + 1 < len(tokens) and tokens[k + 1] == "(":
            args, k = [], k + 2
            while True:
                arg, k = node(k)
                args.append(arg)
                if tokens[k] == ")":
                    break
                k += 1  # ','
            return (name, args), k + 1
        return name, k + 1

    tree, end = node(0)
    assert end == len(tokens)

    def run(t, inputs):
        if isinstance(t, tuple):
            return RELEASE_OPS[t[0]](*(run(a, inputs) for a in t[1]))
        if t.isdigit():
            like = next(iter(inputs.values()))
            return torch.full((), float(t), dtype=like.dtype)
        return inputs[t]

    return lambda **inputs: run(tree, inputs)


def release_reduce(loss, weight=None, reduction="mean", avg_factor=None):
    """``weight_reduce_loss`` of the release's ``mmdet/models/losses/utils.py`` (lines 26-52)."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()
    assert reduction == "mean"
    return loss.sum() / avg_factor


def release_iou(a, b, eps=1e-6):
    """``bbox_overlaps(a, b, is_aligned=True)`` of the release (iou2d_calculator.py, lines 102-151:
    the raw union floored at eps)."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return overlap / torch.max(area_a + area_b - overlap, torch.tensor(eps, dtype=a.dtype))


def release_reg_per_box(func, pred, target, eps=1e-7):
    """The unreduced ``reg_loss`` of ``tools/get_loss.py`` (lines 80-95): overlap, union + ε and
    enclosing area + ε, passed as U, I, E (the pset's argument names, search_space.py line 115)."""
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    enclose_wh = (torch.max(pred[:, 2:], target[:, 2:])
                  - torch.min(pred[:, :2], target[:, :2])).clamp(min=0)
    enclose = enclose_wh[:, 0] * enclose_wh[:, 1] + eps
    union = ap + ag - overlap + eps
    return func(U=union, I=overlap, E=enclose)


def release_reg_loss(func, pred, target, weight, avg_factor, loss_weight=1.0):
    """``RegLoss.forward`` (get_loss.py lines 197-218): the weight averaged over its last axis
    whatever its shape (so an [N] IoU weight becomes one scalar), then ``reg_loss``."""
    if not torch.any(weight > 0):
        return (pred * weight).sum()
    weight = weight.mean(-1)
    return loss_weight * release_reduce(release_reg_per_box(func, pred, target), weight, "mean",
                                        avg_factor)


# ----------------------------------------------------------------------------------------------
# operator sets
# ----------------------------------------------------------------------------------------------

def release_names(branch: str) -> set[str]:
    return {ops.OPS[c].release for c in BRANCHES[branch].operators}


def test_reg_branch_has_the_releases_regression_operators():
    assert release_names("reg") == RELEASE_SETS["reg"]
    assert len(BRANCHES["reg"].operators) == 15


def test_classification_operator_sets_differ_from_the_release_only_as_documented():
    assert release_names("cls") == RELEASE_SETS["cls"] | {"Serfc"}
    assert release_names("cls_binary") == RELEASE_SETS["cls_binary"] - {"Softmax"} | {"Serfc"}


# ----------------------------------------------------------------------------------------------
# operators: values and gradients
# ----------------------------------------------------------------------------------------------

def operator_inputs(seed: int = 0) -> np.ndarray:
    """Random and extreme float32 inputs: N(0, 4²), log-uniform magnitudes 1e-6..1e6 of both
    signs, and 0, ±1, ±20 (torch's softplus switches to the identity there), ±88 (the exp clamp),
    ±1e10, ±1e30."""
    rng = np.random.default_rng(seed)
    magnitudes = 10.0 ** rng.uniform(-6, 6, 200) * rng.choice([-1.0, 1.0], 200)
    extremes = [0.0, 1.0, -1.0, 20.0, -20.0, 88.0, -88.0, 1e10, -1e10, 1e30, -1e30]
    return np.concatenate([rng.normal(0, 4, 200), magnitudes, extremes]).astype(np.float32)


UNARY_CODES = [c for c in ops.UNARY if ops.OPS[c].name not in ("softmax", "erfc")]
BINARY_CODES = [c for c in ops.BINARY if ops.OPS[c].name != "dot"]
TIES = {"abs": (0.0, 1.0, 0.0), "relu": (0.0, 0.5, 0.0), "exp": (88.0, 0.5 * math.exp(88.0), 0.0)}
"""name → (point, our derivative there, the release's): jaxloss.guards' tie conventions."""
EXACT_RANGE = {"sin": 1e5, "cos": 1e5}
"""jaxloss.trig's sin and cos track the C library's only for |a| <= 1e5; beyond, they stay in
[-1, 1] (documented there), the release's are the C library's."""


def ours(code: int, *arrays: np.ndarray):
    """(values, gradients of the summed values) in float32 from the JAX engine's operator
    (jax.grad over the same function the engine evaluates) and from the torch bridge's."""
    import jax
    import jax.numpy as jnp

    from bridge.namespace import TORCH
    from jaxloss.engine.namespaces import JAX

    spec = ops.OPS[code]
    xs = [jnp.asarray(a) for a in arrays]
    jv = np.asarray(spec.fn(JAX, *xs), np.float64)
    jg = [np.asarray(g, np.float64) for g in
          jax.grad(lambda *v: jnp.sum(spec.fn(JAX, *v)), argnums=tuple(range(len(xs))))(*xs)]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    tv = spec.fn(TORCH, *ts)
    tg = torch.autograd.grad(tv.sum(), ts)
    return (jv, jg), (tv.detach().numpy().astype(np.float64),
                      [g.numpy().astype(np.float64) for g in tg])


def theirs(code: int, *arrays: np.ndarray, dtype=torch.float64):
    fn = RELEASE_OPS[ops.OPS[code].release]
    ts = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    v = fn(*ts)
    gs = torch.autograd.grad(v.sum(), ts)
    return v.detach().numpy().astype(np.float64), [g.numpy().astype(np.float64) for g in gs]


def assert_close(got, want, label, rtol=1e-5, atol=1e-6, want32=None):
    """``got`` (float32) against the release's ``want`` (float64): NaN where it is NaN, the same
    infinity where it is beyond float32, elsewhere within rtol·|want| + atol + 2·|want32 − want|:
    the release's own float32 error at that point (``want32``, its value in float32), which is as
    far as two float32 implementations of one formula can be held to it."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    spread = np.zeros_like(want) if want32 is None else np.abs(np.asarray(want32) - want)
    spread = np.where(np.isnan(spread), np.inf, spread)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), f"{label}: NaN at different points"
    big = ~nan & (np.abs(want) > np.finfo(np.float32).max)
    assert np.all(np.isinf(got[big]) & (np.sign(got[big]) == np.sign(want[big]))), label
    ok = ~nan & ~big
    with np.errstate(invalid="ignore"):
        err = np.abs(got[ok] - want[ok]) - (rtol * np.abs(want[ok]) + atol + 2 * spread[ok])
    err = np.where(np.isnan(err), -1.0, err)  # ±inf beside a release that overflows too
    assert np.all(err <= 0), f"{label}: worst at {np.argmax(err)}: {got[ok][np.argmax(err)]!r} " \
                             f"vs {want[ok][np.argmax(err)]!r}"


@pytest.mark.parametrize("code", UNARY_CODES, ids=lambda c: ops.OPS[c].name)
def test_unary_operator_values_and_gradients_match_the_releases(code):
    name = ops.OPS[code].name
    a = operator_inputs()
    beyond = np.abs(a) > EXACT_RANGE.get(name, np.inf)
    want_v, (want_g,) = theirs(code, a.astype(np.float64))
    want32_v, (want32_g,) = theirs(code, a, dtype=torch.float32)
    for engine, (v, (g,)) in zip(("jax", "torch"), ours(code, a)):
        assert np.all(np.abs(v[beyond]) <= 1)
        v, g = v[~beyond], g[~beyond]
        assert_close(v, want_v[~beyond], f"{engine} {name} value vs the release",
                     want32=want32_v[~beyond])
        # where the value is NaN the validity check rejects the formula: no gradient to compare
        keep = np.isfinite(want_v[~beyond])
        want_gk, want32_gk = want_g[~beyond], want32_g[~beyond]
        if name in TIES:
            point, tie, release_tie = TIES[name]
            at = a[~beyond] == point
            assert at.any()
            np.testing.assert_allclose(g[at], tie, rtol=1e-6, err_msg=f"{engine} {name} tie")
            np.testing.assert_allclose(want_gk[at], release_tie, rtol=1e-6)
            keep &= ~at
        assert_close(g[keep], want_gk[keep], f"{engine} {name}' vs the release", rtol=1e-4,
                     atol=1e-6, want32=want32_gk[keep])


@pytest.mark.parametrize("code", BINARY_CODES, ids=lambda c: ops.OPS[c].name)
def test_binary_operator_values_and_gradients_match_the_releases(code):
    name = ops.OPS[code].name
    a = operator_inputs(1)
    b = np.concatenate([operator_inputs(2)[:-11], [0.0, 1.0, -1.0, 0.0, -0.0, 2.0, 3.0, 1e-20,
                                                   -1e-20, 1e10, 1e-30]]).astype(np.float32)
    want_v, want_g = theirs(code, a.astype(np.float64), b.astype(np.float64))
    want32_v, want32_g = theirs(code, a, b, dtype=torch.float32)
    for engine, (v, g) in zip(("jax", "torch"), ours(code, a, b)):
        assert_close(v, want_v, f"{engine} {name} value vs the release", want32=want32_v)
        ok = np.isfinite(want_v) & (np.abs(want_v) < np.finfo(np.float32).max)
        for k in range(2):
            assert_close(g[k][ok], want_g[k][ok], f"{engine} ∂{name}/∂{'ab'[k]}", rtol=1e-4,
                         atol=1e-6, want32=want32_g[k][ok])


@pytest.mark.parametrize("name", ["softmax", "dot"])
def test_class_wise_operators_match_the_releases(name):
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.normal(0, 4, (32, 5)), [[0.0] * 5, [1e3, -1e3, 0, 5, 5],
                                                     [30, -30, 0, 0, 0]]]).astype(np.float32)
    b = rng.normal(0, 1, a.shape).astype(np.float32)
    arrays = (a,) if name == "softmax" else (a, b)
    code = ops.code(name)
    want_v, want_g = theirs(code, *(x.astype(np.float64) for x in arrays))
    (jv, jg), (tv, tg) = ours(code, *arrays)
    for engine, v, g in (("jax", jv, jg), ("torch", tv, tg)):
        if name == "dot":  # ours keeps the class axis, the per-sample sum broadcast along it
            assert np.all(v == v[:, :1])
            assert_close(v[:, 0], want_v, f"{engine} dot value")
            g = [x / a.shape[1] for x in g]  # the summed broadcast counts each sample K times
        else:
            assert_close(v, want_v, f"{engine} softmax value")
        for k in range(len(arrays)):
            assert_close(g[k], want_g[k], f"{engine} ∂{name}", rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# the published losses, from the release's prefix strings and input feeding
# ----------------------------------------------------------------------------------------------

def cls_batch(n=48, classes=4, seed=0):
    """Logits with extremes, labels 0..C (C = background) and IoUs in [1e-7, 1]."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes + 1, generator=g) * 4
    logits[0] = torch.tensor([50.0, -50.0, 0.0, 30.0, -30.0])[: classes + 1]
    labels = torch.randint(0, classes + 1, (n,), generator=g)
    iou = torch.rand(n, generator=g).clamp(min=1e-7)
    iou[1] = 1.0
    return logits, labels, iou


def test_a_cls_matches_the_releases_multi_class_loss():
    """get_loss.py lines 41-68: x = logits, y = one-hot, Z = IoU broadcast along the row of a
    positive RoI, 1 on background rows; the per-sample loss averaged."""
    logits, labels, iou = cls_batch()
    k = logits.shape[1]
    func = release_function(PUBLISHED["CSE-Autoloss-A_cls"])

    def release(dtype):
        onehot = F.one_hot(labels, k).to(dtype)
        z = torch.ones(len(labels), k, dtype=dtype)
        positive = labels < k - 1
        z[positive] = iou[positive].to(dtype)[:, None]
        return release_reduce(func(X=logits.to(dtype), Y=onehot, Z=z)).item()

    for loss in (bridge.mmdet.SearchedLoss(jaxloss.parse(PUBLISHED["CSE-Autoloss-A_cls"], "cls")),
                 bridge.mmdet.SearchedLoss("CSE-Autoloss-A_cls")):
        got = loss(logits, labels, iou=iou).item()
        assert_close([got], [release(torch.float64)], "A_cls", want32=[release(torch.float32)])


def test_b_cls_matches_the_releases_binary_loss():
    """get_loss.py lines 10-39: Q = IoU at the ground-truth class of positives, 0 elsewhere;
    PY = one-hot, NY = 1 - PY; α = 0.25 balance outside the formula; summed over the avg_factor."""
    logits, labels, iou = cls_batch(seed=1)
    logits = logits[:, :-1]  # one-stage: C scores, label C = background
    n, c = logits.shape
    func = release_function(PUBLISHED["CSE-Autoloss-B_cls"])
    positive = labels < c
    avg = float(positive.sum()) + 2

    def release(dtype):
        label = torch.zeros(n, c, dtype=dtype)
        label[positive, labels[positive]] = 1.0
        q = torch.zeros(n, c, dtype=dtype)
        q[positive, labels[positive]] = iou[positive].to(dtype)
        per_pair = func(X=logits.to(dtype), Q=q, PY=label, NY=1 - label)
        per_pair = (0.25 * label + 0.75 * (1 - label)) * per_pair
        return release_reduce(per_pair, None, "mean", avg).item()

    # the float32 release differs from float64 by design at |x| >= 17: 1 - σ(x) rounds to 0 and
    # log(0 + 1e-20) = -46 replaces log(1 - σ(x)) ≈ -x (the row of ±50, ±30 logits has it)
    for loss in (bridge.mmdet.SearchedLoss(
            jaxloss.parse(PUBLISHED["CSE-Autoloss-B_cls"], "cls_binary"), use_sigmoid=True),
            bridge.mmdet.SearchedLoss("CSE-Autoloss-B_cls", use_sigmoid=True)):
        got = loss(logits, labels, iou=iou, avg_factor=avg).item()
        np.testing.assert_allclose(got, release(torch.float32), rtol=1e-5)


def box_batch(n=64, seed=0):
    """Pixel boxes: overlapping, disjoint, identical, nested, 1e-3 px and 1e4 px wide."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 300
    target = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 300], 1)
    pred = target + torch.randn(n, 4, generator=g) * 30
    pred[:, 2:] = torch.max(pred[:, 2:], pred[:, :2] + 1)
    pred[0] = target[0]
    pred[1] = target[1] + torch.tensor([1000.0, 1000.0, 1000.0, 1000.0])
    pred[2] = torch.tensor([10.0, 10.0, 10.001, 10.001])
    target[3] = torch.tensor([0.0, 0.0, 1e4, 1e4])
    pred[4] = target[4] + torch.tensor([5.0, 5.0, -5.0, -5.0]) * 0.1
    return pred, target


@pytest.mark.parametrize("name", ["CSE-Autoloss-A_reg", "CSE-Autoloss-B_reg"])
def test_reg_losses_match_the_releases_per_box_values(name):
    pred, target = box_batch()
    func = release_function(PUBLISHED[name])
    want = release_reg_per_box(func, pred.double(), target.double()).numpy()
    want32 = release_reg_per_box(func, pred, target).numpy()
    for loss in (bridge.mmdet.SearchedLoss(jaxloss.parse(PUBLISHED[name], "reg"), reduction="none"),
                 bridge.mmdet.SearchedLoss(name, reduction="none")):
        got = loss(pred, target).detach().numpy()
        assert_close(got, want, name, want32=want32)


@pytest.mark.parametrize("name", ["CSE-Autoloss-A_reg", "CSE-Autoloss-B_reg"])
def test_reg_weighting_release_option_and_per_sample_default(name):
    pred, target = box_batch(seed=1)
    weight = release_iou(pred, target).clamp(min=1e-7)  # the heads' weight: each box's IoU
    avg = weight.sum()
    func = release_function(PUBLISHED[name])
    per_box = release_reg_per_box(func, pred.double(), target.double())
    release = release_reg_loss(func, pred.double(), target.double(), weight.double(), avg, 2.0)
    # what the release intended (its GIoU baselines): each box weighted by its own IoU
    per_sample = 2.0 * (per_box * weight.double()).sum() / avg
    got_release = bridge.mmdet.SearchedLoss(name, loss_weight=2.0, release_weighting=True)(
        pred, target, weight=weight, avg_factor=avg)
    got_default = bridge.mmdet.SearchedLoss(name, loss_weight=2.0)(pred, target, weight=weight,
                                                                     avg_factor=avg)
    np.testing.assert_allclose(got_release.item(), release.item(), rtol=1e-5)
    np.testing.assert_allclose(got_default.item(), per_sample.item(), rtol=1e-5)
    assert abs(release.item() - per_sample.item()) > 1e-3 * abs(per_sample.item())
    # a [N, 4] weight (GIoULoss's shape) means the same per-sample weights either way
    w4 = weight[:, None].expand(-1, 4)
    for option in (False, True):
        got = bridge.mmdet.SearchedLoss(name, loss_weight=2.0, release_weighting=option)(
            pred, target, weight=w4, avg_factor=avg)
        np.testing.assert_allclose(got.item(), per_sample.item(), rtol=1e-5)


def test_release_weighting_is_a_reg_option():
    with pytest.raises(ValueError, match="reg branch only"):
        bridge.mmdet.SearchedLoss("CSE-Autoloss-B_cls", release_weighting=True)


# ----------------------------------------------------------------------------------------------
# the regression search space: the release's operators in formulas
# ----------------------------------------------------------------------------------------------

SEVEN = {  # a formula with each operator the reg branch gained, and an independent reference
    "exp(-i/u)": lambda i, u, e: np.exp(-i / u),
    "softplus(e/u - 1)": lambda i, u, e: np.logaddexp(0, e / u - 1),
    "sigmoid(2*i/u)": lambda i, u, e: 1 / (1 + np.exp(-2 * i / u)),
    "relu(1 - i/u)": lambda i, u, e: np.maximum(1 - i / u, 0),
    "sin(i/e)": lambda i, u, e: np.sin(i / e),
    "2 - cos(1 - i/u)": lambda i, u, e: 2 - np.cos(1 - i / u),
    "tanh(e/u - i/u)": lambda i, u, e: np.tanh(e / u - i / u),
}
VERDICTS = {
    "exp(-i/u)": None,  # falls with the IoU: rises as the boxes part
    "relu(1 - i/u)": None,  # the IoU loss
    "2 - cos(1 - i/u)": None,  # cos falls on [0, 1]: rises with 1 - IoU
    "tanh(e/u - i/u)": None,  # tanh of (1 - IoU) + (e - u)/u ≥ 0: a GIoU-like distance
    "sigmoid(2*i/u)": "inconsistent",  # rises with the IoU: lowest when the boxes are apart
    "sin(i/e)": "inconsistent",  # rises with i/e: lowest when the boxes are apart
    "softplus(e/u - 1)": "flat",  # constant while one box holds the other (e = u)
}
"""What the property check must say (None: passes), from each formula's shape."""


def test_release_operators_parse_evaluate_and_check_in_the_reg_branch():
    from tests.conftest import make_inputs

    inputs = make_inputs("reg", 256, seed=4)
    i, u, e = (inputs[k].astype(np.float64) for k in ("i", "u", "e"))
    losses = [jaxloss.parse(text, "reg") for text in SEVEN]
    values = jaxloss.evaluate(losses, **inputs)
    for row, (text, ref) in enumerate(SEVEN.items()):
        np.testing.assert_allclose(values[row], ref(i, u, e), rtol=2e-6, atol=2e-6, err_msg=text)
        module = bridge.to_torch(text, "reg")
        got = module(**{k: torch.tensor(v) for k, v in inputs.items()}).numpy()
        np.testing.assert_allclose(got, ref(i, u, e), rtol=2e-6, atol=2e-6, err_msg=text)
    verdicts = jaxloss.check(losses, branch="reg")
    assert {text: verdicts[k].reason for k, text in enumerate(SEVEN)} == VERDICTS


def test_random_reg_samples_use_all_fifteen_operators():
    pop = jaxloss.sample("reg", 400, seed=0, max_nodes=12)
    used = {int(c) for row, n in zip(pop.ops, pop.size) for c in row[:n]}
    assert set(BRANCHES["reg"].operators) <= used
    assert used <= set(BRANCHES["reg"].codes)


# ----------------------------------------------------------------------------------------------
# one-stage heads: the per-batch box loss while a tiny FCOS and ATSS head train
# ----------------------------------------------------------------------------------------------

def release_distance2bbox(points, distance):
    """``distance2bbox`` of the release's ``mmdet/core/bbox/transforms.py`` (lines 131-140, no
    max_shape): the distances added to the points as they are, whatever their units."""
    return torch.stack([points[:, 0] - distance[:, 0], points[:, 1] - distance[:, 1],
                        points[:, 0] + distance[:, 2], points[:, 1] + distance[:, 3]], -1)


def weighted_box_loss(func, pred, target, iou, avg_factor, release: bool):
    """The release's ``RegLoss`` arithmetic (``release``), or each box weighted by its IoU (what
    the release intended, and SearchedLoss's default)."""
    if release:
        return release_reg_loss(func, pred, target, iou, avg_factor)
    return release_reduce(release_reg_per_box(func, pred, target), iou, "mean", avg_factor)


def release_fcos_box_loss(head, outs, func, release: bool):
    """The release's FCOS box loss (fcos_head.py lines 190-248): targets normalized by the stride
    with norm_on_bbox (lines 485-486, the same assignment as mmdet's), predictions and targets
    decoded around the pixel points as they are (stride units), the IoU clamped at 1e-7 as the
    weight and its sum as the avg_factor."""
    from tests.bridge.test_heads import GT

    cls_scores, bbox_preds, _ = outs
    points = head.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                              dtype=bbox_preds[0].dtype,
                                              device=bbox_preds[0].device)
    labels, targets = head.get_targets(points, GT)
    n_imgs = cls_scores[0].shape[0]
    flat_pred = torch.cat([b.permute(0, 2, 3, 1).reshape(-1, 4) for b in bbox_preds])
    flat_points = torch.cat([p.repeat(n_imgs, 1) for p in points])
    labels, targets = torch.cat(labels), torch.cat(targets)
    pos = ((labels >= 0) & (labels < head.num_classes)).nonzero().reshape(-1)
    pred = release_distance2bbox(flat_points[pos], flat_pred[pos])
    target = release_distance2bbox(flat_points[pos], targets[pos])
    iou = release_iou(pred, target).clamp(min=1e-7).detach()
    return head.loss_bbox.loss_weight * weighted_box_loss(func, pred, target, iou, iou.sum(),
                                                          release)


def release_atss_box_loss(head, outs, func, release: bool):
    """The release's ATSS box loss (atss_head.py lines 170-218 per level, 299-303 over levels):
    each level's loss with its IoUs as the weight and avg_factor 1, their sum divided by the IoU
    sum over all levels (1 if that is below 1e-12)."""
    from tests.bridge.test_heads import GT, METAS

    cls_scores, bbox_preds, _ = outs
    anchors, valid = head.get_anchors([s.shape[-2:] for s in cls_scores], METAS, device="cpu")
    anchors, labels, _, targets, _, _ = head.get_targets(anchors, valid, GT, METAS)
    total, iou_sum = 0.0, 0.0
    for lvl_anchors, lvl_labels, lvl_targets, lvl_pred in zip(anchors, labels, targets,
                                                              bbox_preds):
        lvl_anchors, lvl_labels = lvl_anchors.reshape(-1, 4), lvl_labels.reshape(-1)
        lvl_pred = lvl_pred.permute(0, 2, 3, 1).reshape(-1, 4)
        pos = ((lvl_labels >= 0) & (lvl_labels < head.num_classes)).nonzero().squeeze(1)
        if len(pos) == 0:
            continue
        pred = head.bbox_coder.decode(lvl_anchors[pos], lvl_pred[pos])
        target = lvl_targets.reshape(-1, 4)[pos]
        if not head.reg_decoded_bbox:  # mmdet 3 assigns the boxes themselves (the release
            target = head.bbox_coder.decode(lvl_anchors[pos], target)  # encodes, then decodes)
        iou = release_iou(pred, target).clamp(min=1e-7).detach()
        total = total + head.loss_bbox.loss_weight * weighted_box_loss(func, pred, target, iou,
                                                                       1.0, release)
        iou_sum += float(iou.sum())
    return total / (iou_sum if iou_sum >= 1e-12 else 1.0)


HEAD_CASES = {
    "fcos": ("FCOS", dict(box_units="stride"), release_fcos_box_loss),
    "atss": ("ATSS", {}, release_atss_box_loss),
}


@pytest.mark.parametrize("release", [True, False], ids=["release_weighting", "per_sample"])
@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_one_stage_heads_train_with_the_releases_box_loss(case, release):
    """Three SGD steps of a tiny head on fixed features; at every step the head's box loss is the
    release's arithmetic on the same outputs (B_reg, stride units for FCOS)."""
    from mmdet.registry import MODELS

    import tests.bridge.test_heads as heads

    cfg_name, extra, reference = HEAD_CASES[case]
    cfg = dict(getattr(heads, cfg_name), **extra)
    cfg["loss_bbox"] = dict(type="CSE-Autoloss-B_reg", release_weighting=release)
    torch.manual_seed(0)
    head = MODELS.build(cfg)
    head.train()
    feats = heads.features(2)
    func = release_function(PUBLISHED["CSE-Autoloss-B_reg"])
    opt = torch.optim.SGD(head.parameters(), lr=0.01)
    seen = []
    for _ in range(3):
        outs = head(feats)
        losses = head.loss_by_feat(*outs, heads.GT, heads.METAS)
        box = sum(losses["loss_bbox"]) if isinstance(losses["loss_bbox"], list) \
            else losses["loss_bbox"]
        with torch.no_grad():  # in float32, as the release computes
            want = reference(head, outs, func, release)
        np.testing.assert_allclose(box.item(), float(want), rtol=1e-5)
        seen.append(box.item())
        opt.zero_grad()
        sum(v if torch.is_tensor(v) else sum(v) for v in losses.values()).backward()
        opt.step()
    assert len(set(seen)) == 3  # it trained: three different batches of outputs


def test_release_and_per_sample_weighting_differ_on_a_head_batch():
    """The option matters: on the same outputs the two arithmetics give different box losses."""
    from mmdet.registry import MODELS

    import tests.bridge.test_heads as heads

    torch.manual_seed(0)
    head = MODELS.build(dict(heads.FCOS, box_units="stride"))
    head.train()
    outs = head(heads.features(2))
    func = release_function(PUBLISHED["CSE-Autoloss-B_reg"])
    with torch.no_grad():
        a = release_fcos_box_loss(head, outs, func, True)
        b = release_fcos_box_loss(head, outs, func, False)
    assert abs(float(a) - float(b)) > 1e-3 * abs(float(b))


@pytest.mark.parametrize("release", [True, False], ids=["release_weighting", "per_sample"])
def test_atss_box_loss_divides_by_an_iou_sum_below_one(release):
    """Predictions shifted off their targets (IoU ≈ 1e-7, their sum ≪ 1): the release divides by
    the IoU sum all the same (mmdet's ATSSHead would divide by 1)."""
    from mmdet.registry import MODELS

    import tests.bridge.test_heads as heads

    torch.manual_seed(0)
    head = MODELS.build(dict(heads.ATSS, loss_bbox=dict(type="CSE-Autoloss-B_reg",
                                                        release_weighting=release)))
    head.train()
    cls_scores, bbox_preds, centernesses = head(heads.features(2))
    shifted = [torch.zeros_like(b) + torch.tensor([30.0, 0.0, 0.0, 0.0])[None, :, None, None]
               for b in bbox_preds]  # dx = 30 × 0.1 box widths: three widths away
    outs = (cls_scores, shifted, centernesses)
    per_level = head.loss_by_feat_single
    iou_sums = []

    def spy(*args, **kwargs):
        out = per_level(*args, **kwargs)
        iou_sums.append(float(out[3]))
        return out

    head.loss_by_feat_single = spy
    box = sum(head.loss_by_feat(*outs, heads.GT, heads.METAS)["loss_bbox"])
    assert 1e-12 < sum(iou_sums) < 1e-3  # a floor of 1 would shrink the loss 1000-fold or more
    with torch.no_grad():
        want = release_atss_box_loss(head, outs, release_function(PUBLISHED["CSE-Autoloss-B_reg"]),
                                     release)
    np.testing.assert_allclose(box.item(), float(want), rtol=1e-5)

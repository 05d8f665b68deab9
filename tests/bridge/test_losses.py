"""``SearchedLoss`` follows MMDetection's loss conventions and equals mmdet's own losses.

With the CE formula it equals ``CrossEntropyLoss``, with GIoU ``GIoULoss``, with FL ``FocalLoss``
(same α, γ, weights, ``avg_factor``, reductions and ``loss_weight``): values and gradients.

Tolerance: 1e-8 relative in float64 over a wide logit range, which tests the conventions exactly
(GIoU: the release adds 1e-7 to u and e where mmdet clamps them at 1e-6, a 1e-11 difference);
1e-5 relative in float32 for moderate logits (|x| ≤ 4). The jaxloss formulas are written with the
search space's operators (``log(1 - sigmoid(x))``, ``log(softmax(x) + 1e-20)``), which lose float32
accuracy for large |x| where mmdet's fused BCE-with-logits / log-softmax keep it; that is a property
of the formulas, the same in the JAX engine, not of the bridge.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmdet.models.losses import CrossEntropyLoss, FocalLoss, GIoULoss
from mmdet.registry import MODELS

import bridge.mmdet  # noqa: F401  (registers)
from bridge import finite
from bridge.mmdet import NAMED, NonFiniteLossError, SearchedLoss

REDUCTIONS = [("mean", None), ("sum", None), ("none", None), ("mean", 37.0), ("none", 37.0)]
DTYPES = {torch.float64: (8.0, 1e-8), torch.float32: (4.0, 1e-5)}


def _both(ours, theirs, inputs, rtol):
    """Values and gradients of two loss calls agree."""
    a, b = ours(), theirs()
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=rtol * 1e-2)
    ga = torch.autograd.grad(a.sum(), inputs)
    gb = torch.autograd.grad(b.sum(), inputs)
    for x, y in zip(ga, gb):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=rtol,
                                   atol=rtol * 1e-2 * max(1.0, float(y.abs().max())))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("reduction,avg_factor", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_formula_equals_cross_entropy_loss(dtype, reduction, avg_factor, weighted):
    scale, rtol = DTYPES[dtype]
    g = torch.Generator().manual_seed(0)
    logits = ((torch.rand(40, 6, generator=g) * 2 - 1) * scale).to(dtype).requires_grad_()
    labels = torch.randint(0, 6, (40,), generator=g)
    weight = torch.rand(40, generator=g).to(dtype) if weighted else None
    ours = SearchedLoss("CE", loss_weight=1.7)
    theirs = CrossEntropyLoss(loss_weight=1.7)
    _both(lambda: ours(logits, labels, weight, avg_factor=avg_factor, reduction_override=reduction),
          lambda: theirs(logits, labels, weight, avg_factor=avg_factor,
                         reduction_override=reduction), [logits], rtol)


def _boxes(g, n, dtype):
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 150 + 2
    a = torch.cat([xy, xy + wh], 1)
    b = a + torch.randn(n, 4, generator=g) * 20
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    return a.to(dtype), b.to(dtype)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("reduction,avg_factor", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (50,), (50, 4)])
def test_giou_formula_equals_giou_loss(dtype, reduction, avg_factor, weight_shape):
    rtol = DTYPES[dtype][1]
    g = torch.Generator().manual_seed(1)
    pred, target = _boxes(g, 50, dtype)
    pred.requires_grad_()
    weight = None if weight_shape is None else torch.rand(*weight_shape, generator=g).to(dtype)
    ours = SearchedLoss("GIoU", loss_weight=10.0)
    theirs = GIoULoss(loss_weight=10.0)
    _both(lambda: ours(pred, target, weight, avg_factor=avg_factor, reduction_override=reduction),
          lambda: theirs(pred, target, weight, avg_factor=avg_factor,
                         reduction_override=reduction), [pred], rtol)


def test_reg_with_all_zero_weights_returns_a_connected_zero_like_giou_loss():
    pred, target = _boxes(torch.Generator().manual_seed(2), 5, torch.float32)
    pred.requires_grad_()
    out = SearchedLoss("CSE-Autoloss-B_reg")(pred, target, torch.zeros(5, 4))
    assert out.item() == 0.0 and out.requires_grad


def focal_formula(gamma: int) -> str:
    def power(t):
        return f"({t})" if gamma == 1 else f"({t})^{gamma}"
    return (f"-[y*{power('1 - sigmoid(x)')}*log(sigmoid(x)) + "
            f"(1 - y)*{power('sigmoid(x)')}*log(1 - sigmoid(x))]")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("reduction,avg_factor", REDUCTIONS)
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2), (0.5, 2), (0.25, 1), (0.75, 3)])
@pytest.mark.parametrize("weight_shape,target_kind", [(None, "labels"), ((30,), "labels"),
                                                      ((30, 4), "labels"), ((30,), "one-hot")])
def test_fl_formula_equals_focal_loss(dtype, reduction, avg_factor, alpha, gamma, weight_shape,
                                      target_kind):
    scale, rtol = DTYPES[dtype]
    g = torch.Generator().manual_seed(3)
    logits = ((torch.rand(30, 4, generator=g) * 2 - 1) * scale).to(dtype).requires_grad_()
    labels = torch.randint(0, 5, (30,), generator=g)  # 4 = background
    target = labels if target_kind == "labels" else \
        torch.nn.functional.one_hot(labels, 5)[:, :4].to(dtype)
    weight = None if weight_shape is None else torch.rand(*weight_shape, generator=g).to(dtype)
    formula = "FL" if gamma == 2 else focal_formula(gamma)
    ours = SearchedLoss(formula, branch="cls_binary", alpha=alpha, loss_weight=0.8)
    theirs = FocalLoss(gamma=float(gamma), alpha=alpha, loss_weight=0.8)
    _both(lambda: ours(logits, target, weight, avg_factor=avg_factor, reduction_override=reduction),
          lambda: theirs(logits, target, weight, avg_factor=avg_factor,
                         reduction_override=reduction), [logits], rtol)


# ----------------------------------------------------------------------------------------------
# the IoU input
# ----------------------------------------------------------------------------------------------

def test_cls_iou_is_w_at_positive_rois_and_one_for_background():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 4, generator=g)
    labels = torch.tensor([0, 3, 1, 3, 2, 3, 0, 3])  # 3 = background
    iou = torch.rand(8, generator=g)
    cei = SearchedLoss("CEI", reduction="none")(logits, labels, iou=iou)
    ce = SearchedLoss("CE", reduction="none")(logits, labels)
    w = torch.where(labels < 3, iou, torch.ones(8))
    np.testing.assert_allclose(cei.numpy(), (w * ce).numpy(), rtol=1e-6)


def test_binary_iou_is_w_at_the_ground_truth_class_and_one_elsewhere():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 3, generator=g)
    labels = torch.tensor([0, 3, 2, 3, 1, 3])  # 3 = background
    iou = torch.rand(6, generator=g)
    fli = SearchedLoss("FLI", reduction="none")(logits, labels, iou=iou)
    fl = SearchedLoss("FL", reduction="none")(logits, labels)
    w = torch.ones(6, 3)
    for n, c in enumerate(labels.tolist()):
        if c < 3:
            w[n, c] = iou[n]
    np.testing.assert_allclose(fli.numpy(), (w * fl).numpy(), rtol=1e-6)
    # B_cls reads w*y as the release's Q: the IoU at the ground-truth class, 0 elsewhere
    b = SearchedLoss("CSE-Autoloss-B_cls", reduction="none", alpha=None)(logits, labels, iou=iou)
    release = SearchedLoss("Neg(Add(Mul(Q,Mul(Add(1,Serf(Sig(NY))),Log(Sig(X)))),Mul(Add(Sgdf(X),"
                           "Neg(Q)),Mul(Add(Add(1,Neg(Q)),Neg(Add(1,Neg(Sig(X))))),Log(Add(1,Neg("
                           "Sig(X))))))))", branch="cls_binary", reduction="none",
                           alpha=None)(logits, labels, iou=iou)
    np.testing.assert_allclose(b.numpy(), release.numpy(), rtol=1e-5)


def test_iou_is_detached():
    logits = torch.randn(4, 3)
    iou = torch.rand(4, requires_grad=True)
    out = SearchedLoss("CEI")(logits.requires_grad_(), torch.tensor([0, 1, 2, 2]), iou=iou)
    out.backward()
    assert iou.grad is None


def test_a_formula_reading_w_without_an_iou_names_the_heads_to_use():
    with pytest.raises(ValueError, match="IoUShared2FCBBoxHead"):
        SearchedLoss("CSE-Autoloss-A_cls")(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]))
    # formulas without w work in stock heads
    SearchedLoss("CE")(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]))


# ----------------------------------------------------------------------------------------------
# registration and arguments
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("class_name,library_name", list(NAMED.items()))
def test_named_losses_are_registered_under_both_names(class_name, library_name):
    for name in (class_name, library_name):
        module = MODELS.build(dict(type=name, loss_weight=2.0))
        assert isinstance(module, SearchedLoss) and module.name == library_name
        assert module.loss_weight == 2.0
    with pytest.raises(TypeError, match="use SearchedLoss"):
        MODELS.build(dict(type=class_name, formula="CE"))


def test_searched_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="needs branch"):
        SearchedLoss("-dot(y, log(softmax(x)))")
    with pytest.raises(ValueError, match="unknown branch"):
        SearchedLoss("CE", branch="softmax")
    with pytest.raises(ValueError, match="cls loss, not reg"):
        SearchedLoss("CE", branch="reg")
    with pytest.raises(ValueError, match="use_sigmoid=True"):
        SearchedLoss("FL", use_sigmoid=False)
    with pytest.raises(ValueError, match="alpha applies to the cls_binary"):
        SearchedLoss("CE", alpha=0.25)
    with pytest.raises(TypeError, match="_delete_=True"):
        MODELS.build(dict(type="SearchedLoss", formula="FL", gamma=2.0))
    from jaxloss import FormulaError

    with pytest.raises(FormulaError):
        SearchedLoss("log(x, y)", branch="cls")


def test_custom_imports_in_a_config_file_registers_the_bridge(tmp_path):
    config = tmp_path / "cfg.py"
    config.write_text("custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)\n"
                      "loss = dict(type='CSE-Autoloss-A_reg', loss_weight=10.0)\n")
    code = textwrap.dedent(f"""
        from mmengine.config import Config
        from mmdet.registry import MODELS
        assert MODELS.get('SearchedLoss') is None
        cfg = Config.fromfile({str(config)!r})
        print(MODELS.build(cfg.loss).formula)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "1 - i / u + (1 - (i + 2) / e)"


# ----------------------------------------------------------------------------------------------
# NaN and inf
# ----------------------------------------------------------------------------------------------

def test_a_non_finite_value_names_the_formula_and_the_step():
    finite.STEP.value = 17
    try:
        with pytest.raises(NonFiniteLossError, match=r"'log\(x\)' produced a non-finite value at "
                                                     r"training step 17"):
            SearchedLoss("log(x)", branch="cls_binary")(torch.randn(8, 3), torch.zeros(8).long())
    finally:
        finite.STEP.value = None


def test_a_non_finite_gradient_is_caught_in_backward():
    logits = torch.tensor([[0.0, 1.0], [2.0, 3.0]], requires_grad=True)
    out = SearchedLoss("sqrt(abs(x))", branch="cls_binary")(logits, torch.tensor([2, 2]))
    assert torch.isfinite(out)
    with pytest.raises(NonFiniteLossError, match="non-finite gradient at an unknown training step"):
        out.backward()


def test_the_check_can_be_turned_off():
    out = SearchedLoss("log(x)", branch="cls_binary", check_finite=False)(
        torch.tensor([[-1.0]]), torch.tensor([1]))
    assert torch.isnan(out)


def test_labels_out_of_range_are_an_error_not_a_silent_clamp():
    with pytest.raises(ValueError, match=r"labels must lie in 0..2 \(2 = background\); got -1..1"):
        SearchedLoss("CE")(torch.randn(3, 3), torch.tensor([-1, 0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in 0..3"):
        SearchedLoss("FL")(torch.randn(2, 3), torch.tensor([0, 4]))

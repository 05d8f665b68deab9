"""Library losses against independent implementations (PyTorch / torchvision), float32, 1e-5 relative.

Logits stay within ±4, where the formulas as written (log(1 - σ(x)), log(softmax(x))) are accurate
to 1e-5 in float32. Beyond that, 1 - σ(x) computed in float32 has a relative error of about
6e-8 / (1 - σ(x)) (2.4e-5 at x = 6), in torchvision's focal loss as in the literal formula; the
fused log-sigmoid of a hand-written loss avoids it, a searched formula (like the release's) cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops

from jaxloss import LIBRARY, RELEASE_FORMS, evaluate
from tests.conftest import areas_from_boxes, random_box_pairs

RTOL = 1e-5
N = 512


def _assert_close(ours, theirs, rtol=RTOL):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert np.all(np.isfinite(ours))
    scale = np.maximum(np.abs(theirs), 1e-6)
    worst = np.max(np.abs(ours - theirs) / scale)
    assert worst <= rtol, f"worst relative difference {worst:.2e} > {rtol:.0e}"


@pytest.fixture(scope="module")
def cls_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 5, generator=g) * 2.0
    labels = torch.randint(0, 5, (N,), generator=g)
    w = torch.rand(N, generator=g)
    return x, labels, w


@pytest.fixture(scope="module")
def binary_inputs():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(N, generator=g) * 8 - 4)
    y = torch.randint(0, 2, (N,), generator=g).float()
    w = torch.rand(N, generator=g)
    return x, y, w


def _evaluate_cls(names, x, labels, w):
    y = F.one_hot(labels, x.shape[1]).float()
    return evaluate([LIBRARY[n] for n in names], x=x.numpy(), y=y.numpy(), w=w.numpy())


def test_ce_and_cei_match_torch_cross_entropy(cls_inputs):
    x, labels, w = cls_inputs
    ce, cei = _evaluate_cls(["CE", "CEI"], x, labels, w)
    reference = F.cross_entropy(x, labels, reduction="none")
    _assert_close(ce, reference)
    _assert_close(cei, w * reference)


def test_fl_fli_bce_match_torchvision_focal_loss(binary_inputs):
    x, y, w = binary_inputs
    bce, fl, fli = evaluate([LIBRARY["BCE"], LIBRARY["FL"], LIBRARY["FLI"]],
                            x=x.numpy(), y=y.numpy(), w=w.numpy())
    focal = tvops.sigmoid_focal_loss(x, y, alpha=-1, gamma=2, reduction="none")
    _assert_close(fl, focal)
    _assert_close(fli, w * focal)
    _assert_close(bce, F.binary_cross_entropy_with_logits(x, y, reduction="none"))


def test_iou_and_giou_match_torchvision_from_the_same_boxes():
    rng = np.random.default_rng(2)
    a, b = random_box_pairs(rng, N)
    areas = areas_from_boxes(a, b)
    iou, giou = evaluate([LIBRARY["IoU"], LIBRARY["GIoU"]], **areas)
    ta, tb = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    _assert_close(iou, 1 - torch.diag(tvops.box_iou(ta, tb)), rtol=1e-4 / 2)
    _assert_close(giou, tvops.generalized_box_iou_loss(ta, tb, reduction="none"))


def test_cse_autoloss_a_reg_is_giou_like_with_small_constants():
    rng = np.random.default_rng(3)
    areas = areas_from_boxes(*random_box_pairs(rng, N))
    (a_reg,) = evaluate(LIBRARY["CSE-Autoloss-A_reg"], **areas)
    i, u, e = (areas[k] for k in "iue")
    _assert_close(a_reg, (1 - i / u) + (1 - (i + 2) / e))


@pytest.mark.parametrize("name", sorted(RELEASE_FORMS))
def test_paper_and_release_forms_of_published_losses_agree(name, cls_inputs, binary_inputs):
    paper, release = LIBRARY[name], RELEASE_FORMS[name]
    if paper.branch == "cls":
        x, labels, w = cls_inputs
        inputs = dict(x=x.numpy(), y=F.one_hot(labels, 5).float().numpy(), w=w.numpy())
    elif paper.branch == "cls_binary":
        x, y, w = binary_inputs
        inputs = dict(x=x.numpy(), y=y.numpy(), w=w.numpy())
    else:
        inputs = areas_from_boxes(*random_box_pairs(np.random.default_rng(4), N))
    ours, theirs = evaluate([paper, release], **inputs)
    # the two forms round differently (e.g. (1 - Q) - (1 - σ) vs σ - Q): compare with an absolute
    # floor at float32 resolution of the terms involved
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=2e-6 * np.max(np.abs(theirs)))


def test_published_losses_against_closed_forms_in_float64(binary_inputs):
    from scipy.special import erf, expit

    x, y, w = (t.numpy().astype(np.float64) for t in binary_inputs)
    (b_cls,) = evaluate(LIBRARY["CSE-Autoloss-B_cls"], x=x, y=y, w=w)
    serf = lambda a: (1 + erf(np.sqrt(np.pi) * a / 4)) / 2  # noqa: E731
    sgdf = lambda a: (1 + (2 / np.pi) * 2 * np.arctan(np.tanh(np.pi * a / 8))) / 2  # noqa: E731
    s, q = expit(x), w * y
    expected = -(q * (1 + serf(expit(1 - y))) * np.log(s) + (sgdf(x) - q) * (s - q) * np.log(1 - s))
    np.testing.assert_allclose(b_cls, expected, rtol=1e-4, atol=1e-5)

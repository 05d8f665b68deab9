"""``SearchedLoss``: any jaxloss formula as an MMDetection loss, switched in with one config line.

::

    loss_cls=dict(type='SearchedLoss', formula='-dot((1 + sin(w))*y, log(softmax(x)))', branch='cls')
    loss_cls=dict(type='SearchedLoss', formula='CSE-Autoloss-B_cls', use_sigmoid=True)  # by name
    loss_bbox=dict(type='SearchedLoss', formula='(1 - i/u) + (1 - (i + 2)/e)', branch='reg',
                   loss_weight=10.0)

It follows mmdet's loss conventions: ``forward(pred, target, weight=None, avg_factor=None,
reduction_override=None)`` with mmdet's own ``weight_reduce_loss``, then ``loss_weight`` ×. So it
drops in where ``CrossEntropyLoss`` (``cls``), ``FocalLoss`` (``cls_binary``) or ``GIoULoss``
(``reg``, on decoded boxes: the head needs ``reg_decoded_bbox=True``) sit, and with the CE, FL and
GIoU formulas it computes what they compute (tested). Inputs are built as
:mod:`bridge.mmdet.inputs` describes.

The IoU input w: the bridge's IoU-aware heads (:mod:`bridge.mmdet.heads`) pass ``iou=`` to every
loss whose ``accepts_iou`` is true. A formula that reads w inside a stock head (which passes no IoU)
raises an error that names the heads to use, rather than silently training with w = 1.

NaN and ±inf: the value (forward) and the gradient sent back to the detector (backward) are checked
and raise :class:`bridge.finite.NonFiniteLossError` naming the formula and the training step
(``check_finite=False`` turns this off, saving one device sync per call).
"""

from __future__ import annotations

import torch
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS

import jaxloss
from bridge import boxes, finite
from bridge.mmdet import inputs as make
from bridge.module import LossModule
from jaxloss.space.resolve import as_loss

_UNSET = object()
REDUCTIONS = ("none", "mean", "sum")
DEFAULT_ALPHA = 0.25
"""The focal α of the binary branch (positives 0.25, negatives 0.75), applied outside the formula."""


def resolve(formula: "str | jaxloss.Loss", branch: str | None) -> jaxloss.Loss:
    """A jaxloss Loss from a library name, formula text (paper or release notation) or a Loss."""
    if branch is not None and branch not in jaxloss.BRANCHES:
        raise ValueError(f"unknown branch {branch!r}: choose one of {', '.join(jaxloss.BRANCHES)}")
    if not isinstance(formula, (str, jaxloss.Loss)) or not str(formula).strip():
        raise ValueError(f"SearchedLoss needs formula= (a library name such as 'CSE-Autoloss-A_cls' "
                         f"or formula text); got {formula!r}")
    return as_loss(formula, branch)


@MODELS.register_module()
class SearchedLoss(torch.nn.Module):
    """A jaxloss loss as an MMDetection loss module.

    Args:
      formula: a library name (``'CSE-Autoloss-A_cls'``, see ``jaxloss.LIBRARY``), formula text in
        the paper's or the release's notation, or a :class:`jaxloss.Loss`.
      branch: ``'cls'``, ``'cls_binary'`` or ``'reg'``; needed for formula text.
      reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``.
      loss_weight: multiplies the reduced loss.
      alpha: ``cls_binary`` only: the focal α balance applied outside the formula (default 0.25 as
        in the release and mmdet's FocalLoss; None: no balance).
      use_sigmoid: for mmdet's heads, which read it from the config: must be True for
        ``cls_binary`` (one-stage heads then predict C scores) and False for ``cls``.
      eps: ``reg`` only: added to u and e (px², default 1e-7 as in the release).
      release_weighting: ``reg`` only. False (default): a weight weighs each sample (a [N, 4] weight
        is first averaged over the 4 coordinates, as GIoULoss does). True: the release's
        arithmetic (``RegLoss.forward`` in its ``tools/get_loss.py``): the weight is averaged over
        its last axis whatever its shape, so the [N] IoU weight of the IoU-aware FCOS and ATSS
        heads becomes one scalar, its mean: the release's FCOS box loss is then in effect an
        unweighted mean over the positives (mean IoU × Σ loss / Σ IoU), and ATSS's is weighted by
        each level's mean IoU. This is what trained the published FCOS / ATSS numbers.
      check_finite: raise NonFiniteLossError on a NaN/inf value or gradient (default True).
      constants: real values for the formula's whole-number constants, one per use (the
        ``values`` that ``python -m jaxloss.search --tune-constants`` reports); None: as written.
    """

    accepts_iou = True
    """IoU-aware heads pass ``iou=`` to losses that accept it."""

    def __init__(self, formula, branch: str | None = None, reduction: str = "mean",
                 loss_weight: float = 1.0, alpha=_UNSET, use_sigmoid: bool | None = None,
                 eps=_UNSET, check_finite: bool = True, constants=None,
                 release_weighting: bool = False, **unexpected):
        super().__init__()
        if unexpected:
            raise TypeError(
                f"SearchedLoss got unexpected argument(s) {', '.join(sorted(unexpected))}. If they "
                "come from the base config's loss (e.g. FocalLoss's gamma), replace that dict "
                "instead of merging into it: loss_cls=dict(_delete_=True, type='SearchedLoss', ...)")
        loss = resolve(formula, branch)
        self.branch = loss.branch
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        if alpha is not _UNSET and self.branch != "cls_binary":
            raise ValueError(f"alpha applies to the cls_binary branch only, not {self.branch}")
        if eps is not _UNSET and self.branch != "reg":
            raise ValueError(f"eps applies to the reg branch only, not {self.branch}")
        if release_weighting and self.branch != "reg":
            raise ValueError("release_weighting applies to the reg branch only (the release "
                             f"averages the box loss's weight), not {self.branch}")
        sigmoid = self.branch == "cls_binary"
        if use_sigmoid is not None and self.branch != "reg" and bool(use_sigmoid) != sigmoid:
            raise ValueError(f"{self.branch} losses need use_sigmoid={sigmoid} (cls_binary is the "
                             "per-class sigmoid form of one-stage heads, cls the softmax form)")
        self.module = LossModule(loss, constants)
        self.formula = str(loss)
        self.name = loss.name
        self.reduction = reduction
        self.loss_weight = float(loss_weight)
        self.alpha = DEFAULT_ALPHA if alpha is _UNSET else alpha
        self.use_sigmoid = sigmoid
        self.eps = boxes.AREA_EPS if eps is _UNSET else float(eps)
        self.check_finite = check_finite
        self.release_weighting = bool(release_weighting)

    @property
    def loss(self) -> jaxloss.Loss:
        return self.module.loss

    @property
    def uses_iou(self) -> bool:
        """Whether the formula reads w (the IoU)."""
        return "w" in self.module.uses

    def extra_repr(self) -> str:
        label = f"{self.name}: " if self.name else ""
        weighting = ", release_weighting=True" if self.release_weighting else ""
        return (f"{label}{self.formula!r}, branch={self.branch}, loss_weight={self.loss_weight}"
                f"{weighting}")

    # ------------------------------------------------------------------------------------------
    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None,
                iou: torch.Tensor | None = None, **unsupported) -> torch.Tensor:
        """The weighted, reduced loss (× loss_weight).

        Args:
          pred: ``cls``: logits [N, C+1]; ``cls_binary``: logits [N, C]; ``reg``: boxes [N, 4].
          target: ``cls``: labels [N]; ``cls_binary``: labels [N] (C = background) or [N, C];
            ``reg``: boxes [N, 4].
          weight: per-sample weights [N] (``cls_binary`` also [N, C]; ``reg`` also [N, 4], averaged
            over the 4 coordinates as GIoULoss does; with ``release_weighting`` a ``reg`` weight
            is averaged over its last axis, so [N] becomes its mean).
          avg_factor: divide the sum by this instead of the count (``mean`` only).
          reduction_override: ``'none'``, ``'mean'`` or ``'sum'`` for this call.
          iou: [N] detached IoU of each sample's box with its ground truth (classification only).
        """
        if unsupported:
            raise TypeError(f"SearchedLoss does not support {', '.join(sorted(unsupported))} "
                            "(the head passed arguments this loss would otherwise ignore)")
        if reduction_override not in (None,) + REDUCTIONS:
            raise ValueError(f"reduction_override must be None or one of {REDUCTIONS}")
        reduction = reduction_override or self.reduction
        if self.branch == "reg":
            if iou is not None:
                raise ValueError("iou= is an input of the classification branches, not reg")
            if weight is not None and not torch.any(weight > 0):
                # mmdet's convention (GIoULoss): nothing to regress, a zero connected to the graph
                w = weight.unsqueeze(1) if pred.dim() == weight.dim() + 1 else weight
                return (pred * w).sum()
            per_sample = self._reg(pred, target)
            if weight is not None and (weight.dim() > 1 or self.release_weighting):
                weight = weight.mean(-1)
        elif self.branch == "cls":
            per_sample = self._cls(pred, target, iou)
        else:
            per_sample = self._binary(pred, target, iou)
            weight = self._binary_weight(weight, per_sample)
        if weight is not None:
            weight = weight.to(per_sample.dtype)
        out = self.loss_weight * weight_reduce_loss(per_sample, weight, reduction, avg_factor)
        if self.check_finite:
            finite.check_value(out, self.formula, self.branch, per_sample)
        return out.to(pred.dtype)

    # ------------------------------------------------------------------------------------------
    def _guard(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()  # the guards (1e-20) underflow in half precision
        return finite.guard_gradient(t, self.formula, self.branch) if self.check_finite else t

    def _need_iou(self, iou) -> None:
        if iou is None and self.uses_iou:
            raise ValueError(
                f"the {self.branch} formula {self.formula!r} reads w (the IoU), but its head passed "
                "no iou=: use bridge.mmdet's IoU-aware heads (IoUShared2FCBBoxHead for Faster / "
                "Cascade / Mask R-CNN, IoUFCOSHead, IoUATSSHead), or a formula without w")

    def _cls(self, pred, labels, iou) -> torch.Tensor:
        self._need_iou(iou)
        x = self._guard(pred)
        return self.module(**make.cls_inputs(x, labels, iou))

    def _binary(self, pred, target, iou) -> torch.Tensor:
        self._need_iou(iou)
        x = self._guard(pred)
        inputs = make.binary_inputs(x, target, iou)
        n, c = x.shape
        per_pair = self.module(**{k: v.reshape(-1) for k, v in inputs.items()}).view(n, c)
        if self.alpha is not None:
            per_pair = per_pair * make.alpha_weight(inputs["y"], self.alpha)
        return per_pair

    @staticmethod
    def _binary_weight(weight, per_pair):
        """mmdet FocalLoss's weight shapes: [N] (per sample), [N, C], or [N·C] flattened."""
        if weight is None or weight.shape == per_pair.shape:
            return weight
        if weight.dim() == 1 and weight.shape[0] == per_pair.shape[0]:
            return weight.view(-1, 1)
        if weight.numel() == per_pair.numel():
            return weight.view(per_pair.shape)
        raise ValueError(f"weight {tuple(weight.shape)} fits neither [N], [N, C] nor N·C for "
                         f"a loss of shape {tuple(per_pair.shape)}")

    def _reg(self, pred, target) -> torch.Tensor:
        boxes_p = self._guard(pred)
        i, u, e = boxes.areas(boxes_p, target.to(boxes_p.dtype).detach(), self.eps)
        return self.module(i=i, u=u, e=e)

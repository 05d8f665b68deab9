"""Stopping a training whose searched loss produces NaN or ±inf, with an error that says which.

A random formula can be finite on the check grid and still blow up on a real detector's inputs
(``log`` of a negative score product, ``sqrt`` of a negative difference, a division that cancels the
guard). Left alone, the NaN reaches the weights and the training dies later, deep inside MMDetection
(an assigner assertion, an empty NMS). Instead, every :class:`bridge.mmdet.SearchedLoss` checks its
value in the forward pass and the gradient it sends back to the detector in the backward pass, and
raises :class:`NonFiniteLossError` naming the formula, the branch, what was not finite and the
training step.

The step comes from :data:`STEP`, which :class:`bridge.mmdet.hooks.TrainingStepHook` updates
before every training iteration (``python -m bridge.train`` and the bridge's configs register it).
Without the hook the error says that the step is unknown.
"""

from __future__ import annotations

import torch


class NonFiniteLossError(FloatingPointError):
    """A searched loss produced NaN or ±inf during training.

    Attributes:
      formula: the loss's formula text; branch: its branch; step: the training iteration (0-based,
      None if unknown); where: ``"value"`` or ``"gradient"``.
    """

    def __init__(self, formula: str, branch: str, step: int | None, where: str, detail: str):
        self.formula, self.branch, self.step, self.where = formula, branch, step, where
        at = f"at training step {step}" if step is not None else \
            "at an unknown training step (register bridge.mmdet's TrainingStepHook to know it)"
        super().__init__(f"the {branch} loss {formula!r} produced a non-finite {where} {at}: "
                         f"{detail}. This formula cannot train this detector; reject it.")


class ExplodingLossError(FloatingPointError):
    """A training's loss ran away (finite, but far beyond where it started).

    Attributes:
      step: the training iteration; loss: its total loss; reference: the scale it started at;
      factor: the limit that was crossed (|loss| > factor · reference).
    """

    def __init__(self, step: int, loss: float, reference: float, factor: float):
        self.step, self.loss, self.reference, self.factor = step, loss, reference, factor
        super().__init__(f"the loss exploded at training step {step}: {loss:.4g} is more than "
                         f"{factor:g} times its starting scale {reference:.4g}; aborting this "
                         "training")


class _Step:
    """The current training iteration, set by TrainingStepHook (None outside training)."""

    value: int | None = None


STEP = _Step()


def describe(t: torch.Tensor, noun: str = "values") -> str:
    """'3 NaN and 1 inf among 512 values' (one device sync)."""
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    parts = [f"{nan} NaN" if nan else "", f"{inf} inf" if inf else ""]
    return f"{' and '.join(p for p in parts if p)} among {t.numel()} {noun}"


def check_value(t: torch.Tensor, formula: str, branch: str,
                elements: torch.Tensor | None = None) -> None:
    """Raise NonFiniteLossError if ``t`` holds NaN or ±inf; the message counts them among
    ``elements`` (the unreduced per-sample values) when given."""
    if not bool(torch.isfinite(t).all()):
        if elements is None:
            detail = describe(t.detach(), "values")
        elif bool(torch.isfinite(elements).all()):
            detail = f"its {elements.numel()} per-sample values are finite, but their weighted " \
                     "sum overflows"
        else:
            detail = describe(elements.detach(), "per-sample values")
        raise NonFiniteLossError(formula, branch, STEP.value, "value", detail)


def guard_gradient(t: torch.Tensor, formula: str, branch: str) -> torch.Tensor:
    """``t`` itself, as a new autograd node whose incoming gradient is checked in backward.

    Use it on the tensor the formula reads (the logits, the boxes): the gradient checked is then
    the one this loss sends to the detector, not one that other losses add to the same tensor.
    """
    if not t.requires_grad:
        return t
    out = t.view_as(t)

    def hook(grad: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(grad).all()):
            raise NonFiniteLossError(formula, branch, STEP.value, "gradient",
                                     describe(grad, "gradient entries"))
        return grad

    out.register_hook(hook)
    return out

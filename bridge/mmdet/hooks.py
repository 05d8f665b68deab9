"""mmengine hooks of the bridge: the training step for error messages, loss history, progress bar.

Register them in a config with ``custom_hooks=[dict(type='TrainingStepHook'), ...]``
(``python -m bridge.train`` adds all three).
"""

from __future__ import annotations

import sys
import time

from mmengine.hooks import Hook
from mmdet.registry import HOOKS

from bridge import finite


def _scalars(outputs) -> dict[str, float]:
    """The logged losses of one iteration as plain floats."""
    out = {}
    for key, value in (outputs or {}).items():
        if hasattr(value, "detach"):
            value = value.detach()
            if value.numel() != 1:
                continue
            value = value.item()
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


@HOOKS.register_module()
class TrainingStepHook(Hook):
    """Tells :mod:`bridge.finite` the current training iteration, so that a NaN/inf error names it."""

    priority = "VERY_HIGH"

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        finite.STEP.value = int(runner.iter)

    def after_train(self, runner) -> None:
        finite.STEP.value = None


@HOOKS.register_module()
class RunRecordHook(Hook):
    """Keeps the record of a training run: every iteration's logged losses and wall time
    (``self.history``, a list of dicts with ``step``, ``seconds`` and the loss terms, e.g.
    ``loss``, ``loss_cls``, ``loss_bbox``) and the last validation's metrics (``self.metrics``)."""

    priority = "LOW"

    def __init__(self):
        self.history: list[dict[str, float]] = []
        self.metrics: dict[str, float] | None = None
        self._start = 0.0

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        row = {"step": int(runner.iter), "seconds": time.perf_counter() - self._start}
        row.update(_scalars(outputs))
        self.history.append(row)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = _scalars(metrics)


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A tqdm progress bar over the training iterations, showing the current loss (on stderr)."""

    priority = "LOWEST"

    def __init__(self, disable: bool | None = None):
        self.disable = disable
        self._bar = None

    def before_train(self, runner) -> None:
        from tqdm import tqdm

        total = int(runner.max_iters)
        self._bar = tqdm(total=total, initial=int(runner.iter), desc="training", unit="it",
                         file=sys.stderr, disable=self.disable, dynamic_ncols=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._bar is None:
            return
        loss = _scalars(outputs).get("loss")
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self._bar.update(1)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@HOOKS.register_module()
class ExplodingLossHook(Hook):
    """Aborts a training whose total loss runs away: raises
    :class:`bridge.finite.ExplodingLossError` when |loss| exceeds ``factor`` times its starting
    scale (the largest of 1 and the mean |loss| of the first ``warmup`` iterations)."""

    priority = "LOW"

    def __init__(self, factor: float = 1000.0, warmup: int = 3):
        self.factor, self.warmup = float(factor), int(warmup)
        self._first: list[float] = []

    def before_train(self, runner) -> None:
        self._first = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = _scalars(outputs).get("loss")
        if loss is None:
            return
        if len(self._first) < self.warmup:
            self._first.append(abs(loss))
            return
        reference = max(1.0, sum(self._first) / len(self._first))
        if abs(loss) > self.factor * reference:
            raise finite.ExplodingLossError(int(runner.iter), loss, reference, self.factor)

"""The D_verify stage (the model optimization simulation, paper §3.2.3): the detector trains with
the candidate loss on D_verify for ``verify_iters`` iterations and is tested on it; a candidate
below the threshold (the previous generation's top loss's D_verify AP, less VERIFY_SLACK) is
rejected (``below_threshold``)."""

from __future__ import annotations

import numpy as np

from bridge.search_stages.training import DetectorStage

VERIFY_SLACK = 0.1
"""A candidate passes D_verify with at least (1 - VERIFY_SLACK) times the threshold AP: trainings
of a few dozen iterations on a handful of images are noisy, and an equally good loss should not
fail by chance half the time."""


class VerifyStage(DetectorStage):
    """Train and test on D_verify; reject below the previous generation's top loss."""

    name = "d_verify"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threshold: float | None = None

    def training(self) -> dict:
        return {"data": f"coco:{self.data.verify}", "images": self.data.images,
                "val": "train", "iters": self.d.verify_iters}

    def judge(self, score, passed, reasons, context):
        if context["generation"] == 0:  # L_I: its AP becomes the first threshold
            return passed, reasons
        if self.threshold is None:
            raise RuntimeError("the D_verify threshold is not set: the initial loss is measured "
                               "(generation 0) before any candidate")
        limit = self.threshold * (1.0 - VERIFY_SLACK)
        below = passed & (np.nan_to_num(score, nan=-1.0) < limit)
        reasons = [("below_threshold" if b else r) for b, r in zip(below, reasons)]
        return passed & ~below, reasons

    def end_generation(self, pop, fitness, context):
        scored = np.flatnonzero(~np.isnan(fitness))
        verify = context.get("detector", {}).get(self.name, {})
        if scored.size:
            top = int(scored[np.lexsort((scored, -fitness[scored]))[0]])
            if top in verify:
                self.threshold = verify[top]
                whose = ("the initial loss" if context["generation"] == 0
                         else "this generation's top loss")
                self.log(f"    d_verify threshold for the next generation: "
                         f"{self.threshold:.4f} ({whose})")

    def state(self):
        return {"threshold": self.threshold}

    def load_state(self, state):
        self.threshold = state.get("threshold")

    def describe(self):
        return (f"D_verify simulation ({self.d.config}, {self.d.verify_iters} iterations, "
                f"at least {self.d.verify_min_images} images)")

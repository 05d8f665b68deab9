"""The proxy stage (the proxy task): training on the proxy training set for ``proxy_epochs``
epochs (at least MIN_PROXY_ITERS iterations), COCO mAP (pycocotools) on the held-out validation
subset. That mAP is the candidate's fitness."""

from __future__ import annotations

import math

from bridge.search_stages.training import DetectorStage

MIN_PROXY_ITERS = 1200
"""The proxy training is ``proxy_epochs`` epochs but at least this many iterations: on COCO one
epoch is thousands of iterations; on the embedded default (192 proxy-training images at 2 per
step) it would be 96. Measured on the embedded default (tiny FCOS, FL, 2-core CPU): 600 steps left
the detector taking off (mAP 0.075 ± 0.017 over 4 seeds, 22% seed noise); 1,200 steps gave
0.179 ± 0.019 (11%). See docs/proxy-fidelity.md."""


class ProxyStage(DetectorStage):
    """Train on the proxy training set, COCO mAP on the held-out validation subset."""

    name = "proxy"

    def seeds(self) -> list[int]:
        """``--proxy-seeds`` K: the search's seed and the K - 1 after it (the fitness is the mean
        mAP over them)."""
        return [self.d.seed + j for j in range(self.d.proxy_seeds)]

    def training(self) -> dict:
        # images per step: per GPU times the GPUs of a training (so an epoch takes fewer steps)
        batch = (self.d.batch_size or 2) * (self.d.gpus_per_training or 1)
        iters = max(MIN_PROXY_ITERS,
                    self.d.proxy_epochs * math.ceil(self.data.num_proxy_train / batch))
        return {"data": f"coco:{self.data.proxy_train}", "images": self.data.images,
                "val": f"coco:{self.data.proxy_val}", "iters": iters}

    def describe(self):
        seeds = (f", mean mAP over {self.d.proxy_seeds} seeds" if self.d.proxy_seeds > 1 else "")
        return (f"proxy task ({self.d.config}, {self.training()['iters']} iterations: "
                f"{self.d.proxy_epochs} epoch(s), at least {MIN_PROXY_ITERS}{seeds})")

"""The search's final result: the best losses of the archive and L_I measured again by a detector
stage with seeds the search never used (``jaxloss.search`` chooses the losses and the seeds and
reports mean ± std and the paired difference to L_I)."""

from __future__ import annotations

import numpy as np


def remeasure(stage, pop, seeds) -> np.ndarray:
    """Each loss of ``pop`` trained again with each of ``seeds`` by ``stage`` (a
    :class:`bridge.search_stages.training.DetectorStage`: its protocol, its cache and executor).

    Returns:
      float [len(pop), len(seeds)]: the mAP of each training, NaN where it failed.
    """
    losses = pop.losses()
    formulas = {l.key: str(l) for l in losses}
    out = np.full((len(losses), len(seeds)), np.nan, np.float32)
    for j, seed in enumerate(seeds):
        entries = stage.train(formulas, seed=int(seed))
        for i, loss in enumerate(losses):
            entry = entries[loss.key]
            if entry["reason"] is None:
                out[i, j] = entry["result"]["mAP"]
    return out

"""A plain NumPy evaluator, one loss at a time: the oracle the batched engine is tested against.

It walks the graph node by node (:func:`jaxloss.walk.walk`) with the operator table of
:mod:`jaxloss.ops` (the same formulas and guards as the engine), on the same leaf layout
(:mod:`jaxloss.inputs`).
"""

from __future__ import annotations

import numpy as np

from jaxloss import branches
from jaxloss.branches import per_class_flags
from jaxloss.inputs import leaf_table
from jaxloss.loss import Loss
from jaxloss.namespaces import NUMPY
from jaxloss.walk import walk


def evaluate_one(loss: Loss, dtype=np.float32, **inputs) -> np.ndarray:
    """Per-sample values [N] of one loss, in NumPy (float32 by default, float64 for an oracle)."""
    leaves = leaf_table(loss.branch, inputs)
    spec = branches.get(loss.branch)
    n, k = leaves.num_samples, leaves.num_classes
    leaf_values = {code: leaves.values[row].reshape(n, k).astype(dtype)
                   for row, code in enumerate(spec.leaves)}
    with np.errstate(all="ignore"):
        out = walk(loss.graph, lambda index, code: leaf_values[code], NUMPY,
                   cast=lambda a: np.asarray(a, dtype))
        if per_class_flags(loss.graph, loss.branch)[-1]:
            return out.sum(-1, dtype=dtype)
        return out[:, 0]

"""A plain NumPy evaluator, one loss at a time: the oracle the batched engine is tested against.

It walks the graph node by node with the operator table of :mod:`jaxloss.ops` (the same formulas and
guards as the engine) in float32, on the same leaf layout (:mod:`jaxloss.inputs`).
"""

from __future__ import annotations

import numpy as np

from jaxloss import branches, ops
from jaxloss.inputs import leaf_table
from jaxloss.loss import Loss
from jaxloss.namespaces import NUMPY


def per_class_flags(graph, branch: str) -> list[bool]:
    """Whether each node's value is per-class (``cls`` only): x, y, softmax(·), and element-wise
    operators with a per-class operand; w, constants and dot(·, ·) are per-sample."""
    spec = branches.get(branch)
    flags: list[bool] = []
    for code, lhs, rhs in graph:
        name = ops.OPS[code].name
        arity = ops.OPS[code].arity
        if not spec.class_axis or name == "dot" or (arity == 0 and name not in ("x", "y")):
            flags.append(False)
        elif name in ("x", "y", "softmax"):
            flags.append(True)
        else:
            flags.append(flags[lhs] or (arity == 2 and flags[rhs]))
    return flags


def evaluate_one(loss: Loss, **inputs) -> np.ndarray:
    """Per-sample values [N] of one loss, in float32 NumPy."""
    leaves = leaf_table(loss.branch, inputs)
    spec = branches.get(loss.branch)
    n, k = leaves.num_samples, leaves.num_classes
    leaf_values = {code: leaves.values[row].reshape(n, k) for row, code in enumerate(spec.leaves)}
    values: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for code, lhs, rhs in loss.graph:
            opspec = ops.OPS[code]
            if opspec.arity == 0:
                values.append(leaf_values[code])
            elif opspec.arity == 1:
                values.append(np.asarray(opspec.fn(NUMPY, values[lhs]), np.float32))
            else:
                values.append(np.asarray(opspec.fn(NUMPY, values[lhs], values[rhs]), np.float32))
    out = values[-1]
    if per_class_flags(loss.graph, loss.branch)[-1]:
        return out.sum(-1, dtype=np.float32)
    return out[:, 0]

"""A plain NumPy evaluator, one loss at a time: the oracle the batched engine is tested against.

It walks the graph node by node (:func:`jaxloss.engine.walk.walk`) with the operator table of
:mod:`jaxloss.space.ops` (the same formulas and guards as the engine), on the same leaf layout
(:mod:`jaxloss.engine.inputs`).
"""

from __future__ import annotations

import numpy as np

from jaxloss.engine.inputs import leaf_table
from jaxloss.engine.namespaces import NUMPY
from jaxloss.engine.walk import walk
from jaxloss.space import branches
from jaxloss.space.branches import per_class_flags
from jaxloss.space.loss import Loss


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


def jax_function(loss: Loss):
    """The per-sample values [N] of one loss as a plain JAX function of its inputs (a dict of
    arrays as :func:`evaluate_one` takes them: ``x`` [N, K] or [N], the others [N]), the graph
    walked with the engine's operator table, for ``jax.grad`` / ``jax.vjp``: the reference the torch
    module's gradients are compared with."""
    import jax.numpy as jnp

    from jaxloss.engine.namespaces import JAX
    from jaxloss.space import ops

    spec = branches.get(loss.branch)
    per_class_root = per_class_flags(loss.graph, loss.branch)[-1]

    def f(inputs):
        like = inputs["x"] if spec.class_axis else inputs[spec.inputs[0]][:, None]
        leaves = {ops.code(n): jnp.broadcast_to(inputs[n][:, None] if inputs[n].ndim == 1
                                                else inputs[n], like.shape) for n in spec.inputs}
        for code, value in ops.CONSTANTS.items():
            leaves[code] = jnp.full(like.shape, value, like.dtype)
        out = walk(loss.graph, lambda index, code: leaves[code], JAX)
        return (JAX.sum_last(out) if per_class_root else out)[:, 0]

    return f


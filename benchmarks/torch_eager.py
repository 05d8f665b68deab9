"""The PyTorch eager baseline of the benchmarks: a loss graph walked op by op with plain torch
operators, one candidate at a time, as a straightforward DEAP + PyTorch implementation does.

Plain ``torch.abs`` / ``torch.clamp`` (not ``bridge``'s tie-exact versions, which cost extra
kernels to match JAX's derivatives at exact ties), torch's own vectorised ``sin``, ``cos`` and
``atan`` (not the polynomials of ``jaxloss.engine.trig``, several kernels each in eager mode), and no
input checking: the fastest honest
eager evaluation, so that the speed-ups measured against it are not inflated.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from bridge.namespace import TORCH
from jaxloss.space import branches, ops
from jaxloss.space.branches import per_class_flags

PLAIN = SimpleNamespace(**dict(vars(TORCH), abs=torch.abs,
                               minimum=lambda a, bound: torch.clamp(a, max=bound),
                               maximum=lambda a, bound: torch.clamp(a, min=bound),
                               sin=torch.sin, cos=torch.cos, arctan_unit=torch.atan))


class EagerLoss:
    """Per-sample values of one loss from torch tensors (the inputs of jaxloss.evaluate)."""

    def __init__(self, loss):
        self.graph = loss.graph
        self.branch = branches.get(loss.branch)
        self.per_class = per_class_flags(loss.graph, loss.branch)[-1]

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        like = inputs["x"]
        shape = like.shape if self.branch.class_axis else like.shape + (1,)
        leaves = {ops.code(n): (t.unsqueeze(-1) if t.dim() == 1 else t).expand(shape)
                  for n, t in inputs.items()}
        values = []
        for code, lhs, rhs in self.graph:
            spec = ops.OPS[code]
            if spec.arity == 0:
                values.append(leaves[code] if code in leaves else
                              torch.full(shape, ops.CONSTANTS[code], dtype=like.dtype))
            elif spec.arity == 1:
                values.append(spec.fn(PLAIN, values[lhs]))
            else:
                values.append(spec.fn(PLAIN, values[lhs], values[rhs]))
        out = values[-1]
        return PLAIN.sum_last(out)[..., 0] if self.per_class else out[..., 0]

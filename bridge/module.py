"""``bridge.to_torch``: a jaxloss candidate as a differentiable ``torch.nn.Module``."""

from __future__ import annotations

import torch

import jaxloss
from jaxloss import branches, ops
from jaxloss.branches import per_class_flags
from bridge.namespace import TORCH


class LossModule(torch.nn.Module):
    """Per-sample values of one jaxloss loss, computed from its graph with torch operators.

    Inputs as in ``jaxloss.evaluate``: ``cls``: x [N, K], y [N, K], w [N]; ``cls_binary``: x, y, w
    [N]; ``reg``: i, u, e [N]. Returns [N], differentiable in every input. The graph is walked node
    by node with the same operator table and guards as the JAX engine (no text is ever evaluated).
    """

    def __init__(self, loss: jaxloss.Loss):
        super().__init__()
        self.loss = loss
        self.branch = branches.get(loss.branch)
        self._per_class_root = per_class_flags(loss.graph, loss.branch)[-1]

    def extra_repr(self) -> str:
        return f"{self.loss.branch}: {self.loss}"

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        missing = [n for n in self.branch.inputs if n not in inputs]
        if missing:
            raise ValueError(f"the {self.branch.name} loss needs inputs "
                             f"{', '.join(self.branch.inputs)}; missing {', '.join(missing)}")
        like = inputs["x"] if self.branch.class_axis else inputs[self.branch.inputs[0]]
        shape = like.shape if self.branch.class_axis else like.shape + (1,)
        leaves = {}
        for name in self.branch.inputs:
            t = inputs[name]
            leaves[ops.code(name)] = (t.unsqueeze(-1) if t.dim() == 1 else t).expand(shape)
        for code, value in ops.CONSTANTS.items():
            leaves[code] = torch.full(shape, value, dtype=like.dtype, device=like.device)
        values: list[torch.Tensor] = []
        for code, lhs, rhs in self.loss.graph:
            spec = ops.OPS[code]
            if spec.arity == 0:
                values.append(leaves[code])
            elif spec.arity == 1:
                values.append(spec.fn(TORCH, values[lhs]))
            else:
                values.append(spec.fn(TORCH, values[lhs], values[rhs]))
        out = values[-1]
        if self._per_class_root:
            return TORCH.sum_last(out)[..., 0]
        return out[..., 0]


def to_torch(loss: "jaxloss.Loss | str", branch: str | None = None) -> LossModule:
    """A ``torch.nn.Module`` computing exactly what ``jaxloss.evaluate`` computes for ``loss``.

    Args:
      loss: a :class:`jaxloss.Loss`, or formula text (then ``branch`` is needed).
    """
    if isinstance(loss, str):
        if branch is None:
            raise ValueError("formula text needs a branch: to_torch(text, branch='cls')")
        loss = jaxloss.parse(loss, branch)
    return LossModule(loss)

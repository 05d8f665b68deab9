"""The PyTorch array namespace for jaxloss' operator table (see jaxloss.namespaces)."""

from __future__ import annotations

from types import SimpleNamespace

import torch


def _sequential_last(combine, a: torch.Tensor) -> torch.Tensor:
    """Reduce the class axis left to right, keeping it as size 1 (the order the JAX engine uses)."""
    out = a[..., :1]
    for k in range(1, a.shape[-1]):
        out = combine(out, a[..., k:k + 1])
    return out


TORCH = SimpleNamespace(
    exp=torch.exp, log=torch.log, log1p=torch.log1p, abs=torch.abs, sqrt=torch.sqrt,
    tanh=torch.tanh, sin=torch.sin, cos=torch.cos, arctan=torch.atan, erf=torch.erf,
    erfc=torch.erfc, where=torch.where,
    sigmoid=torch.sigmoid,
    minimum=lambda a, bound: torch.clamp(a, max=bound),
    maximum=lambda a, bound: torch.clamp(a, min=bound),
    max_last=lambda a: _sequential_last(torch.maximum, a),
    sum_last=lambda a: _sequential_last(torch.add, a),
    broadcast_like=lambda a, like: a.expand_as(like),
)
"""torch versions of the functions the operator table calls (``minimum``/``maximum`` always take
a Python number as their second argument there)."""

"""The PyTorch array namespace for jaxloss' operator table (see jaxloss.namespaces)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from jaxloss.engine.namespaces import with_trig


def _sequential_last(combine, a: torch.Tensor) -> torch.Tensor:
    """Reduce the class axis left to right, keeping it as size 1 (the order the JAX engine uses)."""
    out = a[..., :1]
    for k in range(1, a.shape[-1]):
        out = combine(out, a[..., k:k + 1])
    return out


# Derivatives at ties follow JAX, so that gradients match the engine's everywhere, not only almost
# everywhere: JAX gives |a|' = 1 at a = 0 (torch.abs: 0) and max(a, b)' = 1/2 at a = b (torch.clamp:
# 0). Those points are common, not rare: y is exactly 0 or 1, and S-curves such as alf take |·| of
# their argument, so alf'(0) would be 0 instead of 1/4 with torch.abs. Values are unchanged (also
# for NaN and ±inf).

def _abs(a: torch.Tensor) -> torch.Tensor:
    return torch.where(a >= 0, a, -a)


def _maximum(a: torch.Tensor, bound: float) -> torch.Tensor:
    return torch.where(a > bound, a, torch.where(a < bound, bound, 0.5 * (a + bound)))


def _minimum(a: torch.Tensor, bound: float) -> torch.Tensor:
    return torch.where(a < bound, a, torch.where(a > bound, bound, 0.5 * (a + bound)))


TORCH = with_trig(SimpleNamespace(
    divide=torch.div, exp=torch.exp, log=torch.log, log1p=torch.log1p, abs=_abs, sqrt=torch.sqrt,
    tanh=torch.tanh, round=torch.round, floor=torch.floor, erf=torch.erf,
    erfc=torch.erfc, where=torch.where,
    sigmoid=torch.sigmoid,
    minimum=_minimum,
    maximum=_maximum,
    max_last=lambda a: _sequential_last(torch.maximum, a),  # torch.maximum splits ties like JAX
    sum_last=lambda a: _sequential_last(torch.add, a),
    broadcast_like=lambda a, like: a.expand_as(like),
))
"""torch versions of the functions the operator table calls (``minimum``/``maximum`` always take
a Python number as their second argument there)."""

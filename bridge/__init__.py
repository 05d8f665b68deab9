"""bridge: the PyTorch side of jaxloss. Depends on jaxloss, never the other way round.

* :func:`to_torch` — a candidate loss as a differentiable ``torch.nn.Module``.
"""

from bridge.module import LossModule, to_torch

__all__ = ["LossModule", "to_torch"]

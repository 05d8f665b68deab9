"""bridge: the PyTorch side of jaxloss. Depends on jaxloss, never the other way round.

* :func:`to_torch` — a candidate loss as a differentiable ``torch.nn.Module`` (values and
  gradients as the JAX engine computes them, CPU or CUDA);
* :mod:`bridge.mmdet` — ``import bridge.mmdet`` registers ``SearchedLoss``, the named CSE-Autoloss
  losses, the IoU-aware heads and the bridge's hooks in MMDetection's registries;
* :mod:`bridge.data` — COCO / Pascal VOC / BDD100K annotations, the embedded default data set,
  D_verify and the proxy split;
* :mod:`bridge.config` — editing MMDetection configs (losses, data, schedule); configs in
  ``bridge/configs/`` (``small/`` for CPU, ``paper/`` for the paper's R50-FPN 1x runs);
* ``python -m bridge.train`` — train, evaluate COCO mAP, write JSON (:mod:`bridge.train`).

Importing ``bridge`` alone loads nothing heavy (the training workers of :mod:`bridge.executor`
start fast); ``bridge.to_torch`` loads torch and JAX on first use, never MMDetection.
"""

__all__ = ["LossModule", "to_torch"]


def __getattr__(name: str):
    if name in __all__:
        from bridge import module

        return getattr(module, name)
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")

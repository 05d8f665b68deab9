"""MMDetection integration: ``import bridge.mmdet`` registers the bridge in mmdet's registries.

In a config (the import must be in the config file itself, mmengine ignores it when added later)::

    custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)

Registered in ``mmdet.registry.MODELS``:

* ``SearchedLoss(formula=..., branch=...)``: any jaxloss formula as a loss
  (:mod:`bridge.mmdet.searched_loss`);
* ``CEILoss``, ``FLILoss``, ``CSEAutolossAClsLoss``, ``CSEAutolossARegLoss``,
  ``CSEAutolossBClsLoss``, ``CSEAutolossBRegLoss``, also under their library names
  (``'CSE-Autoloss-A_cls'``, ...) (:mod:`bridge.mmdet.library_losses`);
* the IoU-aware heads ``IoUShared2FCBBoxHead``, ``IoUFCOSHead``, ``IoUATSSHead``
  (:mod:`bridge.mmdet.heads`).

In ``mmdet.registry.HOOKS``: ``TrainingStepHook``, ``RunRecordHook``, ``ProgressBarHook``
(:mod:`bridge.mmdet.hooks`).
"""

from bridge.finite import NonFiniteLossError
from bridge.mmdet.heads import IoUATSSHead, IoUFCOSHead, IoUShared2FCBBoxHead
from bridge.mmdet.hooks import RunRecordHook, ProgressBarHook, TrainingStepHook
from bridge.mmdet.library_losses import (NAMED, CEILoss, CSEAutolossAClsLoss,
                                         CSEAutolossARegLoss, CSEAutolossBClsLoss,
                                         CSEAutolossBRegLoss, FLILoss)
from bridge.mmdet.searched_loss import SearchedLoss

__all__ = [
    "CEILoss", "CSEAutolossAClsLoss", "CSEAutolossARegLoss", "CSEAutolossBClsLoss",
    "CSEAutolossBRegLoss", "FLILoss", "IoUATSSHead", "IoUFCOSHead", "IoUShared2FCBBoxHead",
    "RunRecordHook", "NAMED", "NonFiniteLossError", "ProgressBarHook", "SearchedLoss",
    "TrainingStepHook",
]

"""Named MMDetection losses for the paper's initial losses and the four published CSE-Autoloss losses.

Each is ``SearchedLoss`` with its formula fixed, registered under a class name and under its
``jaxloss.LIBRARY`` name, so either spelling works in a config:

=======================  =========================  ============  ============================
class name               library name (also a type)  branch        use in
=======================  =========================  ============  ============================
``CEILoss``              ``'CEI'``                   cls           two-stage RoI heads
``FLILoss``              ``'FLI'``                   cls_binary    one-stage heads
``CSEAutolossAClsLoss``  ``'CSE-Autoloss-A_cls'``    cls           Faster / Cascade / Mask R-CNN
``CSEAutolossARegLoss``  ``'CSE-Autoloss-A_reg'``    reg           (decoded boxes)
``CSEAutolossBClsLoss``  ``'CSE-Autoloss-B_cls'``    cls_binary    FCOS, ATSS
``CSEAutolossBRegLoss``  ``'CSE-Autoloss-B_reg'``    reg           (decoded boxes)
=======================  =========================  ============  ============================

They take SearchedLoss's other arguments (``loss_weight``, ``reduction``, ``alpha``, ...).
"""

from __future__ import annotations

from mmdet.registry import MODELS

from bridge.mmdet.searched_loss import SearchedLoss

NAMED = {
    "CEILoss": "CEI",
    "FLILoss": "FLI",
    "CSEAutolossAClsLoss": "CSE-Autoloss-A_cls",
    "CSEAutolossARegLoss": "CSE-Autoloss-A_reg",
    "CSEAutolossBClsLoss": "CSE-Autoloss-B_cls",
    "CSEAutolossBRegLoss": "CSE-Autoloss-B_reg",
}
"""Registered class name → jaxloss.LIBRARY name."""


def _named(class_name: str, library_name: str) -> type:
    def __init__(self, **kwargs):
        if "formula" in kwargs:
            raise TypeError(f"{class_name} is {library_name}; use SearchedLoss for another formula")
        SearchedLoss.__init__(self, formula=library_name, **kwargs)

    cls = type(class_name, (SearchedLoss,), {
        "__init__": __init__,
        "__doc__": f"``SearchedLoss(formula='{library_name}')`` (see jaxloss.LIBRARY).",
        "__module__": __name__,
        "LIBRARY_NAME": library_name,
    })
    MODELS.register_module(name=[class_name, library_name], module=cls)
    return cls


CEILoss = _named("CEILoss", "CEI")
FLILoss = _named("FLILoss", "FLI")
CSEAutolossAClsLoss = _named("CSEAutolossAClsLoss", "CSE-Autoloss-A_cls")
CSEAutolossARegLoss = _named("CSEAutolossARegLoss", "CSE-Autoloss-A_reg")
CSEAutolossBClsLoss = _named("CSEAutolossBClsLoss", "CSE-Autoloss-B_cls")
CSEAutolossBRegLoss = _named("CSEAutolossBRegLoss", "CSE-Autoloss-B_reg")

"""Editing MMDetection configs for a run: the losses, the data set, the schedule, the hooks.

Each function takes an ``mmengine.Config`` and changes it in place; nothing here builds a model.
The bridge's configs live in ``bridge/configs/`` (``small/`` for CPU runs and tests, ``paper/`` for
the paper's ResNet-50-FPN 1x runs); :func:`load` also takes them by name.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from mmengine.config import Config, ConfigDict

import jaxloss
from bridge.data.source import DetectionData
from jaxloss.search.report import CONFIG_KEY, searched_loss_config
from jaxloss.space.resolve import as_loss

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

IOU_HEADS = {
    "Shared2FCBBoxHead": "IoUShared2FCBBoxHead",
    "FCOSHead": "IoUFCOSHead",
    "ATSSHead": "IoUATSSHead",
}
"""mmdet head → the bridge's IoU-aware subclass (see bridge.mmdet.heads)."""

DEFAULT = ("default", "none", "")
"""Formula values meaning "keep the config's loss"."""


def find(name: "str | Path") -> Path:
    """A config file: a path, or the name of one of the bridge's configs (``fcos_r18-tiny``)."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[:-3] if path.name.endswith(".py") else path.name
    for sub in ("small", "paper"):
        candidate = CONFIG_DIR / sub / f"{stem}.py"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*/*.py"))
    raise FileNotFoundError(f"no config {name!r}: not a file, nor one of the bridge's configs "
                            f"({', '.join(known)})")


def load(name: "str | Path") -> Config:
    """``Config.fromfile`` of :func:`find`'s file."""
    return Config.fromfile(str(find(name)))


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------

def detection_heads(model: ConfigDict) -> list[tuple[ConfigDict, str]]:
    """The heads whose losses are searched, each with its classification branch:
    ``roi_head.bbox_head`` (one, or one per Cascade stage) → ``cls``; ``bbox_head`` → ``cls_binary``.
    """
    heads = []
    roi = model.get("roi_head")
    if roi is not None and roi.get("bbox_head") is not None:
        bbox_heads = roi["bbox_head"]
        for head in bbox_heads if isinstance(bbox_heads, (list, tuple)) else [bbox_heads]:
            heads.append((head, "cls"))
    if model.get("bbox_head") is not None:
        heads.append((model["bbox_head"], "cls_binary"))
    if not heads:
        raise ValueError("the config's model has neither roi_head.bbox_head nor bbox_head: which "
                         "loss should the searched formula replace?")
    return heads


def _searched(formula: str, branch: str, old: dict | None, **extra) -> dict:
    loss = as_loss(formula, None if formula in jaxloss.LIBRARY else branch)
    if loss.branch != branch:
        raise ValueError(f"{formula!r} is a {loss.branch} loss; this head needs a {branch} loss")
    return searched_loss_config(str(loss) if loss.name is None else loss.name, branch,
                                loss_weight=(old or {}).get("loss_weight", 1.0), **extra)


def set_losses(cfg: Config, loss_cls: str | None = None, loss_reg: str | None = None) -> None:
    """Replace the detection heads' classification and/or box losses by searched formulas.

    Args:
      loss_cls: formula text or a library name for the classification loss (``cls`` branch in
        RoI heads, ``cls_binary`` in one-stage heads); None or ``"default"``: keep the config's.
      loss_reg: the same for the box regression loss (``reg`` branch, on decoded boxes).

    Each keeps its head's ``loss_weight``. When either is searched, the heads become their IoU-aware
    variants (:data:`IOU_HEADS`), as the release trains searched losses, and RoI heads regress
    decoded boxes (``reg_decoded_bbox=True``).
    """
    searched_cls = loss_cls is not None and loss_cls.strip().lower() not in DEFAULT
    searched_reg = loss_reg is not None and loss_reg.strip().lower() not in DEFAULT
    if not (searched_cls or searched_reg):
        return
    plan = []  # everything is checked before anything changes
    for head, branch in detection_heads(cfg.model):
        kind = head.get("type")
        if kind not in IOU_HEADS and kind not in IOU_HEADS.values():
            raise ValueError(f"no IoU-aware variant of {kind}: the bridge has "
                             f"{', '.join(IOU_HEADS)}")
        change = {"type": IOU_HEADS.get(kind, kind)}
        if searched_cls:
            extra = dict(use_sigmoid=True) if branch == "cls_binary" else {}
            key = CONFIG_KEY[branch]
            change[key] = ConfigDict(_searched(loss_cls, branch, head.get(key), **extra))
        if searched_reg:
            key = CONFIG_KEY["reg"]
            change[key] = ConfigDict(_searched(loss_reg, "reg", head.get(key)))
            if branch == "cls":
                change["reg_decoded_bbox"] = True
        plan.append((head, change))
    for head, change in plan:
        for key, value in change.items():
            head[key] = value  # replaced, not merged (ConfigDict.update would merge)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

def _innermost(dataset: ConfigDict) -> ConfigDict:
    while isinstance(dataset.get("dataset"), dict):  # RepeatDataset, ClassBalancedDataset, ...
        dataset = dataset["dataset"]
    return dataset


def set_num_classes(node, num_classes: int) -> int:
    """Set every ``num_classes`` in a model config (heads, Cascade stages, mask heads); returns
    how many were set."""
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = num_classes
                count += 1
            else:
                count += set_num_classes(value, num_classes)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += set_num_classes(value, num_classes)
    return count


def apply_data(cfg: Config, data: DetectionData) -> None:
    """Point the train / val / test data loaders and evaluators at ``data`` and size the heads."""
    parts = {"train_dataloader": (data.train_ann, data.train_images),
             "val_dataloader": (data.val_ann, data.val_images),
             "test_dataloader": (data.val_ann, data.val_images)}
    for key, (ann, images) in parts.items():
        if cfg.get(key) is None:
            continue
        ds = _innermost(cfg[key]["dataset"])
        ds["data_root"] = ""
        ds["ann_file"] = str(Path(ann).resolve())
        prefix = dict(ds.get("data_prefix") or {})
        prefix["img"] = str(Path(images).resolve()) + "/"
        ds["data_prefix"] = prefix
        ds["metainfo"] = dict(classes=tuple(data.classes))
    for key in ("val_evaluator", "test_evaluator"):
        evaluator = cfg.get(key)
        for ev in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
            if isinstance(ev, dict) and "ann_file" in ev:
                ev["ann_file"] = str(Path(data.val_ann).resolve())
    if set_num_classes(cfg.model, len(data.classes)) == 0:
        raise ValueError("the config's model has no num_classes to set")


# ----------------------------------------------------------------------------------------------
# schedule and runtime
# ----------------------------------------------------------------------------------------------

def set_iters(cfg: Config, iters: int) -> None:
    """Train for ``iters`` iterations and validate once at the end.

    An epoch schedule (the paper configs) becomes iteration-based: ``by_epoch`` LR steps are
    dropped (the iteration warm-up stays) and the sampler becomes infinite.
    """
    if iters < 1:
        raise ValueError(f"iters must be at least 1; got {iters}")
    cfg.train_cfg = ConfigDict(type="IterBasedTrainLoop", max_iters=int(iters),
                               val_interval=int(iters))
    schedulers = cfg.get("param_scheduler") or []
    schedulers = schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]
    cfg.param_scheduler = [s for s in schedulers if s.get("by_epoch", True) is False]
    loader = cfg.train_dataloader
    loader["sampler"] = ConfigDict(type="InfiniteSampler", shuffle=True)
    if cfg.get("log_processor") is not None:
        cfg.log_processor["by_epoch"] = False
    hooks = cfg.get("default_hooks") or {}
    if "checkpoint" in hooks:
        hooks["checkpoint"] = ConfigDict(type="CheckpointHook", interval=-1, by_epoch=False,
                                         save_last=False)
    if "logger" in hooks:
        hooks["logger"]["interval"] = max(1, min(int(hooks["logger"].get("interval", 50)),
                                                 int(iters)))


def set_runtime(cfg: Config, work_dir: "str | Path", seed: int = 0, progress: bool = True,
                batch_size: int | None = None) -> None:
    """Work folder, seed, a unique experiment name, the bridge's hooks and the batch size."""
    cfg.work_dir = str(work_dir)
    cfg.randomness = ConfigDict(seed=int(seed), deterministic=False)
    cfg.experiment_name = f"bridge-{uuid.uuid4().hex[:8]}"
    if cfg.get("visualizer") is not None:  # mmengine keeps one instance per name per process
        cfg.visualizer["name"] = cfg.experiment_name
    hooks = [h for h in (cfg.get("custom_hooks") or [])
             if h.get("type") not in ("TrainingStepHook", "RunRecordHook", "ProgressBarHook")]
    hooks += [dict(type="TrainingStepHook"), dict(type="RunRecordHook"),
              dict(type="ProgressBarHook", disable=not progress)]
    cfg.custom_hooks = hooks
    if batch_size is not None:
        cfg.train_dataloader["batch_size"] = int(batch_size)

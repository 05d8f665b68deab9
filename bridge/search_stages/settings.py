"""The settings of the detector stages: every option with its default (stated here, once), its
command-line flag and its check; the settings of one search resolved for the stages; and the check
that the detector config fits the branch.

:class:`DetectorSettings`' fields are settings of ``python -m jaxloss.search``: jaxloss adds them
to its ``Settings`` (attributes, ``--config`` file names, keys of a run's ``settings.json``) and
their flags (:func:`add_arguments`) to its command line, through the plugin
(:mod:`bridge.search_stages.plugin`) it finds at the ``jaxloss.stages`` entry point.

jaxloss loads this module while ``jaxloss.search.settings`` is itself being imported: nothing of
``jaxloss.search`` is imported here at module level, only inside the functions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from bridge import executor as executors

DEFAULT_CONFIG = {"cls": "faster-rcnn_r18-tiny", "cls_binary": "fcos_r18-tiny",
                  "reg": "fcos_r18-tiny"}
"""The detector of each branch (a bridge config name) when ``--detector-config`` is left out."""
DEFAULT_TASK = "bridge.search_stages:train_candidate"
"""The function that trains one candidate in a worker when ``detector_task`` is left out (part of
every training's cache key: the same name keeps the results of earlier runs)."""
GENERATIONS = 3
"""Default generations with the detector stages: with 1,200-step proxy trainings, 3 generations,
L_I and the final fresh-seed re-measurement take 14.3 minutes on the 2-core CPU machine; each more
generation adds about 2.4 minutes, so 5 would leave under a minute of the 20-minute budget."""
PROXY_VAL = 10_000
"""Images held out as the proxy validation split when ``--proxy-val`` is left out (the paper's
10k), at most a quarter of the training set."""
TITLE = "detector stages (D_verify simulation and proxy task)"
"""The title of the flags' group in ``python -m jaxloss.search --help``."""


@dataclass(frozen=True)
class DetectorSettings:
    """Every option of the detector stages, with its default (see :func:`add_arguments` for what
    each means). ``None``: decided when the search starts (see :class:`DetectorSetup`)."""

    detector_config: str | None = None  # None: DEFAULT_CONFIG of the branch
    data: str = "embedded"
    images: str | None = None
    verify_iters: int = 40
    verify_min_images: int = 8
    proxy_epochs: int = 1
    proxy_val: int | None = None  # None: 10,000, at most a quarter of the training set
    batch_size: int | None = None  # None: the config's
    executor: str = "local"
    workers: int | None = None  # None: one per GPU (group), else one per core, at most 4
    gpus_per_training: int | None = None  # GPUs of one node per training (None: 1, or CPU)
    ray_address: str | None = None
    train_timeout: float = 1800.0
    explode_factor: float = 1000.0
    detector_task: str | None = None  # "module:function" training a candidate (None: DEFAULT_TASK)
    proxy_seeds: int = 1  # last: settings.json keeps the key order of runs saved before it

    @classmethod
    def from_search(cls, settings: Mapping) -> "DetectorSettings":
        """These options out of the search's settings (a dict, e.g. ``Settings.to_json()``); a
        name missing or None takes its default."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names and v is not None})

    def validate(self) -> None:
        """Raises:
          SettingsError: naming the flag of the first bad value and what it may be.
        """
        from jaxloss.search.settings import require

        def need(ok: bool, name: str, what: str) -> None:
            require(ok, name, what, getattr(self, name))

        def whole(value, least: int = 1) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= least

        need(self.executor in ("local", "ray"), "executor", "local or ray")
        need(self.workers is None or whole(self.workers), "workers", "a whole number >= 1")
        need(self.gpus_per_training is None or whole(self.gpus_per_training), "gpus_per_training",
             "a whole number >= 1: the GPUs of one node each training spans (e.g. 8, for the "
             "paper's 8 GPUs x 2 images); leave it out for one GPU per training where there are "
             "GPUs and CPU trainings where there are none")
        need(isinstance(self.verify_iters, int) and self.verify_iters >= 1, "verify_iters",
             "a whole number >= 1")
        need(isinstance(self.verify_min_images, int) and self.verify_min_images >= 1,
             "verify_min_images", "a whole number >= 1")
        need(isinstance(self.proxy_epochs, int) and self.proxy_epochs >= 1, "proxy_epochs",
             "a whole number >= 1")
        need(self.proxy_val is None or (isinstance(self.proxy_val, int) and self.proxy_val >= 1),
             "proxy_val", "a whole number >= 1 (images held out of the training set)")
        need(whole(self.proxy_seeds), "proxy_seeds", "a whole number >= 1 (trainings per "
             "candidate on the proxy task)")
        need(self.batch_size is None or (isinstance(self.batch_size, int)
                                         and self.batch_size >= 1),
             "batch_size", "a whole number >= 1")
        need(isinstance(self.train_timeout, (int, float)) and self.train_timeout > 0,
             "train_timeout", "seconds > 0")
        need(isinstance(self.explode_factor, (int, float)) and self.explode_factor > 1,
             "explode_factor", "a factor > 1")


def default_configs() -> str:
    """:data:`DEFAULT_CONFIG` in words: ``faster-rcnn_r18-tiny for cls, fcos_r18-tiny for
    cls_binary and reg``."""
    by_config: dict[str, list[str]] = {}
    for branch, config in DEFAULT_CONFIG.items():
        by_config.setdefault(config, []).append(branch)
    return ", ".join(f"{config} for {' and '.join(branches)}"
                     for config, branches in by_config.items())


def add_arguments(group) -> None:
    """The flags of :class:`DetectorSettings` (an argparse group of ``python -m jaxloss.search``):
    each stores into its setting's name, None when left out (the setting keeps its default)."""
    d = DetectorSettings()
    group.add_argument("--detector-config", metavar="CONFIG",
                       help=f"MMDetection config (a file or a bridge config name; default "
                            f"{default_configs()})")
    group.add_argument("--data", metavar="SPEC",
                       help=f"training set: {d.data} (default; embedded:SIZE for SIZE px images), "
                            "coco:FILE.json, voc:ROOT, bdd:FILE.json")
    group.add_argument("--images", metavar="DIR", help="image folder of --data (coco, bdd)")
    group.add_argument("--verify-iters", type=int, metavar="N",
                       help=f"training iterations on D_verify (default {d.verify_iters})")
    group.add_argument("--verify-min-images", type=int, metavar="N",
                       help="D_verify is one image per category, but at least N images (default "
                            f"{d.verify_min_images}; one image of a one-category data set, "
                            "trained and tested on itself, ranks nothing)")
    group.add_argument("--proxy-epochs", type=int, metavar="N",
                       help=f"epochs of proxy training (default {d.proxy_epochs}, as the paper)")
    group.add_argument("--proxy-val", type=int, metavar="N",
                       help="training images held out as the proxy validation split (default: "
                            f"{PROXY_VAL:,} as the paper, at most a quarter of the training set)")
    group.add_argument("--proxy-seeds", type=int, metavar="K",
                       help="train each candidate on the proxy task with K seeds (the search's "
                            "seed and the next K-1) and take the mean mAP as its fitness: the "
                            "seed noise of a fitness falls by sqrt(K), at K times the cost "
                            f"(default {d.proxy_seeds}; see docs/proxy-fidelity.md)")
    group.add_argument("--batch-size", type=int, metavar="B",
                       help="training batch size, per GPU (default: the config's)")
    group.add_argument("--executor", choices=["local", "ray"],
                       help=f"where trainings run: {d.executor} worker processes (default) or "
                            "Ray tasks")
    group.add_argument("--workers", type=int, metavar="W",
                       help="local trainings at once (default: one per GPU, or per group of "
                            "--gpus-per-training GPUs, on a GPU machine; one single-threaded "
                            "training per core, at most 4, on a CPU machine)")
    group.add_argument("--gpus-per-training", type=int, metavar="N",
                       help="GPUs of one machine (or Ray node) each training spans, one rank "
                            "process each (MMEngine's distributed launcher); --batch-size is per "
                            "GPU and a config with auto_scale_lr scales its lr to N x "
                            "--batch-size (default: one GPU per training where there are GPUs, "
                            "CPU trainings where there are none)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="Ray cluster to join (e.g. auto or ray://head:10001; default: a local "
                            "instance)")
    group.add_argument("--train-timeout", type=float, metavar="S",
                       help="seconds before a training is killed and marked failed (default "
                            f"{d.train_timeout:g})")
    group.add_argument("--explode-factor", type=float, metavar="F",
                       help="abort a training whose loss exceeds F times its first value "
                            f"(default {d.explode_factor:g})")


@dataclass(frozen=True)
class DetectorSetup:
    """The detector settings of one search, resolved: the config of the branch, the number of
    workers on this machine, the training function; with the search's branch, seed and initial
    loss. What the stages run with (written to ``RUN_DIR/detector_settings.json``)."""

    branch: str
    config: str
    data: str
    images: str | None
    verify_iters: int
    verify_min_images: int
    proxy_epochs: int
    proxy_val: int | None
    proxy_seeds: int
    batch_size: int | None
    executor: str
    workers: int
    ray_address: str | None
    timeout_s: float
    explode_factor: float
    seed: int
    initial: str
    task: str
    gpus_per_training: int | None  # None: one GPU per training where there are GPUs

    @classmethod
    def from_search(cls, settings: Mapping) -> "DetectorSetup":
        """From the search's settings (a dict: ``branch`` and ``seed``, the
        :class:`DetectorSettings` (missing or None: their defaults), ``initial`` (None: the
        branch's library default))."""
        from jaxloss.space.library import INITIAL_LOSS, LIBRARY

        d = DetectorSettings.from_search(settings)
        branch = settings["branch"]
        return cls(
            branch=branch, config=d.detector_config or DEFAULT_CONFIG[branch], data=d.data,
            images=d.images, verify_iters=int(d.verify_iters),
            verify_min_images=int(d.verify_min_images), proxy_epochs=int(d.proxy_epochs),
            proxy_val=d.proxy_val, proxy_seeds=int(d.proxy_seeds), batch_size=d.batch_size,
            executor=d.executor,
            workers=int(d.workers or default_workers(d)), ray_address=d.ray_address,
            timeout_s=float(d.train_timeout), explode_factor=float(d.explode_factor),
            seed=int(settings["seed"]),
            initial=settings.get("initial") or str(LIBRARY[INITIAL_LOSS[branch]]),
            task=d.detector_task or DEFAULT_TASK, gpus_per_training=d.gpus_per_training)


def default_workers(d: DetectorSettings) -> int:
    """``--workers`` left out: see :func:`bridge.executor.default_workers` (Ray tasks go wherever
    the cluster has room, so the number matters only for the threads of each)."""
    if d.executor != "local":
        return 1
    return executors.default_workers(d.gpus_per_training, executors.visible_gpus())


def check_detector_config(d: DetectorSetup) -> None:
    """Load the detector config and put the initial loss into it, as every training will, so that
    a missing config, a head the bridge cannot search or a config of the other branch stops the
    search before anything runs (not after the first generation, in a worker).

    Raises:
      SettingsError: naming ``--detector-config`` and what is wrong with it.
    """
    from bridge import config as configs
    from bridge.search_stages.worker import LOSS_SLOT
    from jaxloss.search.settings import SettingsError

    try:
        cfg = configs.load(d.config)
    except FileNotFoundError as err:
        raise SettingsError(f"--detector-config: {err}") from None
    except Exception as err:  # noqa: BLE001 - mmengine raises many kinds for a broken file
        raise SettingsError(f"--detector-config: {d.config} cannot be read as an MMDetection "
                            f"config ({type(err).__name__}: {err})") from err
    try:
        heads = configs.detection_heads(cfg.model)
    except ValueError as err:
        raise SettingsError(f"--detector-config {d.config}: {err}") from None
    kinds = ", ".join(f"{head.get('type')} ({branch})" for head, branch in heads)
    if d.branch != "reg" and any(branch != d.branch for _, branch in heads):
        raise SettingsError(
            f"--detector-config {d.config}: its heads take a different classification loss than "
            f"--branch {d.branch} searches ({kinds}; RoI heads take cls, one-stage heads "
            f"cls_binary): give the branch of its heads, or a {d.branch} detector (the bridge's "
            f"default: {DEFAULT_CONFIG[d.branch]})")
    try:
        configs.set_losses(cfg, **{LOSS_SLOT[d.branch]: d.initial})
    except ValueError as err:
        raise SettingsError(f"--detector-config {d.config}: the {d.branch} loss cannot be put "
                            f"into its heads ({kinds}): {err}") from None

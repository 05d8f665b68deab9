"""``python -m bridge.train``: train a detector with searched losses, evaluate COCO mAP, write JSON.

::

    python -m bridge.train --config faster-rcnn_r18-tiny --loss-cls CSE-Autoloss-A_cls \\
        --loss-reg "(1 - i/u) + (1 - (i + 2)/e)" --iters 200
    python -m bridge.train --config fcos_r50-caffe_fpn_gn-head_cse-autoloss-b_1x_coco \\
        --data coco:data/coco/annotations/instances_train2017.json --images data/coco/train2017 \\
        --val coco:data/coco/annotations/instances_val2017.json --val-images data/coco/val2017 \\
        --gpus-per-training 4 --batch-size 4
    python -m bridge.train --config fcos_r50-caffe_fpn_gn-head_cse-autoloss-b_1x_coco \\
        --gpus-per-training 4 --batch-size 4 --print-config

``--config`` is a config file or the name of one of the bridge's configs (``bridge/configs``);
``--loss-cls`` / ``--loss-reg`` take formula text (paper or release notation) or a library name
(``default`` keeps the config's loss); ``--data`` / ``--val`` take the specs of
:mod:`bridge.data.source` (default: the embedded data set). ``--iters N`` trains N iterations and
validates once at the end (default: the config's schedule). The result (COCO metrics from
pycocotools, the loss at every step, step times, the batch and learning rate it trained with) is
written as JSON to ``--out`` (default ``WORK_DIR/metrics.json``); a progress bar shows the training
on stderr.

Several GPUs. ``--gpus-per-training N`` trains one detector on N GPUs of this machine (the first N
that ``CUDA_VISIBLE_DEVICES`` shows): the data is prepared once, then N rank processes of
``python -m bridge.train --launcher pytorch`` run MMEngine's distributed training
(``launcher='pytorch'``, NCCL; ``--batch-size`` is per GPU). The ranks stay in this process's
process group (a search worker's group, which its executor kills as a whole on a timeout) and die
with it (``PR_SET_PDEATHSIG``); when one rank fails the others are killed at once and its error is
raised here. (torchrun is not used for this: it starts its ranks in sessions of their own, out of
reach of the group kill.) ``torchrun --nproc_per_node N -m bridge.train --launcher pytorch ...``
works too, for runs outside the search. Without CUDA the ranks are CPU processes (gloo), for tests.

The learning rate. A config's ``auto_scale_lr = dict(enable=True, base_batch_size=16)`` (the paper
configs have it) makes MMEngine's Runner scale the optimizer's lr linearly with the effective batch:
``lr × (GPUs × images per GPU) / base_batch_size``; the Runner's world size is the number of GPUs.
``--print-config`` prints the final config's key parts, with the effective batch and the lr after
that scaling, without training (``--print-config full``: the whole config as well); every training
checks that the Runner uses that lr (an error if not).

Exit status: 0 done; 2 bad arguments, config, formula or data (the message says which); 3 the
formula produced NaN or inf during training (the message names the formula and the step).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import math
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.hooks import Hook

import jaxloss
from bridge import config as configs, finite
from bridge.data import DataError, EmbeddedSpec, prepare
from bridge.executor import CrashedError

LAUNCHER_PID = "BRIDGE_LAUNCHER_PID"
"""Environment variable of a rank started by :func:`launch`: the launcher's pid (the rank dies with
it)."""


def _runner(cfg):
    import logging

    from mmengine.runner import Runner

    import bridge.mmdet  # noqa: F401  (registers the losses, heads and hooks)

    class QuietRunner(Runner):
        """MMEngine's Runner, minus the environment report it builds for an INFO log line even
        when the log level (``log_level = 'WARNING'`` in the small configs) drops that line: the
        report runs compilers and ``nvidia-smi`` in subprocesses and formats the whole config,
        1-3 s per training on the CPU machine, most of a 40-step D_verify training."""

        def _log_env(self, env_cfg):
            if self.logger.isEnabledFor(logging.INFO):
                super()._log_env(env_cfg)

    return QuietRunner.from_cfg(cfg)


def summarize(history: list[dict], window: int = 10) -> dict:
    """First / last losses (means over ``window`` steps) and step-time statistics of a run."""
    if not history:
        return {}
    losses = [row["loss"] for row in history if "loss" in row]
    times = [row["seconds"] for row in history[1:]] or [history[0]["seconds"]]
    w = max(1, min(window, len(losses) // 3 or 1))
    return {
        "loss_first": statistics.fmean(losses[:w]) if losses else None,
        "loss_last": statistics.fmean(losses[-w:]) if losses else None,
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": statistics.fmean(times),
    }


# ----------------------------------------------------------------------------------------------
# batch and learning rate
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LrPlan:
    """The batch and the learning rate of a training, as MMEngine's ``Runner.scale_lr`` sets them.

    ``batch_per_gpu`` images per process and step; ``gpus`` processes (MMEngine's world size);
    ``base_batch`` the batch the config's lr is for (``auto_scale_lr.base_batch_size``, None if
    the config has none); ``scale`` whether ``auto_scale_lr.enable`` is on; ``lr`` the config's
    optimizer lr (before scaling), ``optimizer`` its type.
    """

    batch_per_gpu: int
    gpus: int
    base_batch: int | None
    scale: bool
    lr: float
    optimizer: str

    @property
    def effective_batch(self) -> int:
        """Images per optimizer step: GPUs × images per GPU."""
        return self.gpus * self.batch_per_gpu

    @property
    def ratio(self) -> float:
        """The factor on the config's lr: effective batch / base batch with scaling on, else 1."""
        return self.effective_batch / self.base_batch if self.scale else 1.0

    @property
    def scaled_lr(self) -> float:
        """The lr the training starts from (before the warm-up's factor)."""
        return self.lr * self.ratio

    def describe_lr(self) -> str:
        """The lr after scaling and how it came about."""
        if self.scale and self.effective_batch != self.base_batch:
            return (f"{self.scaled_lr:g} = {self.optimizer} lr {self.lr:g} x "
                    f"{self.effective_batch}/{self.base_batch} (auto_scale_lr: the config's lr is "
                    f"for {self.base_batch} images per step; MMEngine's Runner scales it linearly)")
        if self.scale:
            return (f"{self.lr:g}, the config's {self.optimizer} lr (it is for {self.base_batch} "
                    "images per step, as here)")
        return (f"{self.lr:g}, the config's {self.optimizer} lr as configured (auto_scale_lr is "
                f"off in this config: not scaled for {self.effective_batch} images per step)")

    def describe(self) -> str:
        return (f"batch {self.batch_per_gpu} image(s) per GPU x {self.gpus} GPU(s) = "
                f"{self.effective_batch} images per step; lr {self.describe_lr()}")


def lr_plan(cfg, gpus: int = 1) -> LrPlan:
    """The :class:`LrPlan` of ``cfg`` (its final batch size) trained on ``gpus`` processes.

    Raises:
      ValueError: ``auto_scale_lr`` enabled without a ``base_batch_size``, or no optimizer lr.
    """
    auto = cfg.get("auto_scale_lr") or {}
    scale = bool(auto.get("enable", False))
    base = auto.get("base_batch_size")
    if scale and not base:
        raise ValueError("the config enables auto_scale_lr without a base_batch_size: add the "
                         "batch its lr is for, e.g. auto_scale_lr = dict(enable=True, "
                         "base_batch_size=16)")
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    if "lr" not in optimizer:
        raise ValueError("the config has no optim_wrapper.optimizer.lr: which learning rate "
                         "should the training use?")
    return LrPlan(int(cfg.train_dataloader["batch_size"]), int(gpus),
                  int(base) if base else None, scale, float(optimizer["lr"]),
                  str(optimizer.get("type", "optimizer")))


class LrCheckHook(Hook):
    """Checks, before the first iteration, that the Runner's learning rate is the plan's: the lr
    most parameter groups start from (``initial_lr``, set after ``auto_scale_lr`` and before the
    warm-up) is ``plan.scaled_lr``. Keeps it as ``self.lr``."""

    priority = "VERY_LOW"

    def __init__(self, plan: LrPlan):
        self.plan = plan
        self.lr: float | None = None

    def before_train(self, runner) -> None:
        groups = runner.optim_wrapper.optimizer.param_groups
        counts = collections.Counter(float(g.get("initial_lr", g["lr"])) for g in groups)
        self.lr = counts.most_common(1)[0][0]
        if runner.world_size != self.plan.gpus or \
                not math.isclose(self.lr, self.plan.scaled_lr, rel_tol=1e-6):
            raise RuntimeError(
                f"the Runner trains with lr {self.lr:g} on {runner.world_size} process(es), but "
                f"the plan was {self.plan.describe()}: the lr was not scaled as printed. This is "
                "a bug of the bridge (bridge/train.py); the training was stopped before its first "
                "step")


# ----------------------------------------------------------------------------------------------
# one training
# ----------------------------------------------------------------------------------------------

def build_config(config: "str | Path", loss_cls: str | None = None, loss_reg: str | None = None,
                 *, iters: int | None = None, batch_size: int | None = None,
                 work_dir: "str | Path" = "runs/config", seed: int = 0, progress: bool = True,
                 explode_factor: float | None = None, launcher: str = "none"):
    """The config a training runs with, all but its data (:func:`bridge.config.apply_data`).

    ``launcher``: ``none`` (one process) or ``pytorch`` (a rank of a distributed training: the
    environment has torch.distributed's RANK, WORLD_SIZE, ...). Without CUDA a rank uses gloo and
    a CPU DistributedDataParallel (tests); with CUDA, the config's backend (NCCL)."""
    cfg = configs.load(config)
    configs.set_losses(cfg, loss_cls, loss_reg)
    if iters is not None:
        configs.set_iters(cfg, iters)
    configs.set_runtime(cfg, work_dir, seed=seed, progress=progress, batch_size=batch_size)
    if explode_factor is not None:
        cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="ExplodingLossHook",
                                                          factor=float(explode_factor))]
    if launcher not in ("none", "pytorch"):
        raise ValueError(f"launcher: none or pytorch, got {launcher!r}")
    cfg.launcher = launcher
    if launcher == "pytorch" and not torch.cuda.is_available():
        env_cfg = dict(cfg.get("env_cfg") or {})
        env_cfg["dist_cfg"] = dict(backend="gloo")
        cfg.env_cfg = env_cfg
        # MMEngine passes device_ids=[LOCAL_RANK], which a CPU module refuses
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None,
                                     broadcast_buffers=False)
    return cfg


def world() -> tuple[int, int]:
    """(rank, world size) of this rank, from torch.distributed's environment variables.

    Raises:
      ValueError: they are not set (the process was not started by a launcher)."""
    missing = [k for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise ValueError(f"--launcher pytorch runs one rank of a distributed training, but "
                         f"{', '.join(missing)} are not set: start it with torchrun "
                         "--nproc_per_node N -m bridge.train --launcher pytorch ..., or run "
                         "python -m bridge.train --gpus-per-training N (which starts the ranks)")
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def train(config: "str | Path", loss_cls: str | None = None, loss_reg: str | None = None, *,
          data: str = "embedded", images=None, val: str | None = None, val_images=None,
          iters: int | None = None, batch_size: int | None = None,
          work_dir: "str | Path | None" = None, seed: int = 0, progress: bool = True,
          embedded: EmbeddedSpec = EmbeddedSpec(), explode_factor: float | None = None,
          gpus_per_training: int = 1, launcher: str = "none",
          threads: int | None = None) -> dict:
    """Train a detector with the given losses, validate it, and return the run's record.

    ``gpus_per_training`` > 1 (with ``launcher="none"``): the training spans that many GPUs of this
    machine, one rank process each (:func:`launch`); ``batch_size`` is per GPU; ``threads``: CPU
    threads of all ranks together (default: torch's count here). ``launcher="pytorch"``: this
    process is one rank of such a training (started by :func:`launch` or torchrun).

    Returns:
      a JSON-able dict: the arguments, ``metrics`` (CocoMetric's ``coco/bbox_mAP``,
      ``coco/bbox_mAP_50``, ... from pycocotools), ``history`` (losses and seconds per step, rank
      0's), the summary of :func:`summarize`, ``train_seconds`` (wall time of the training and its
      final validation), the device, ``gpus`` (processes), ``batch_size`` (per GPU),
      ``effective_batch_size`` and ``lr`` (the lr after auto_scale_lr, as the Runner used it).

    ``explode_factor``: abort (``bridge.finite.ExplodingLossError``) when the loss exceeds that
    many times its starting scale (:class:`bridge.mmdet.hooks.ExplodingLossHook`); None: never.

    Raises:
      bridge.finite.NonFiniteLossError: the formula produced NaN/inf (names formula and step).
      bridge.finite.ExplodingLossError: the loss ran away (with ``explode_factor``).
      bridge.data.DataError, jaxloss.FormulaError, ValueError, FileNotFoundError: bad inputs.
      bridge.executor.CrashedError: a rank died without an exception (multi-GPU).
    """
    if not (isinstance(gpus_per_training, int) and gpus_per_training >= 1):
        raise ValueError(f"gpus_per_training: a whole number >= 1, got {gpus_per_training!r}")
    work_dir = Path(work_dir or Path("runs") / f"{configs.find(config).stem}-{int(time.time())}")
    if gpus_per_training > 1 and launcher == "none":
        return _train_spawned(config, loss_cls, loss_reg, data=data, images=images, val=val,
                              val_images=val_images, iters=iters, batch_size=batch_size,
                              work_dir=work_dir, seed=seed, progress=progress, embedded=embedded,
                              explode_factor=explode_factor, gpus=gpus_per_training,
                              threads=threads)
    rank, gpus = world() if launcher == "pytorch" else (0, 1)
    cfg = build_config(config, loss_cls, loss_reg, iters=iters, batch_size=batch_size,
                       work_dir=work_dir, seed=seed, progress=progress and rank == 0,
                       explode_factor=explode_factor, launcher=launcher)
    # ranks started by torchrun prepare their data each (in a folder of their own: no two write
    # one file); launch() prepares it once and gives them COCO files, which nothing rewrites
    data_dir = work_dir / "data" if launcher == "none" else work_dir / "data" / f"rank{rank}"
    dataset = prepare(data, images, val, val_images, work_dir=data_dir, seed=seed,
                      embedded_spec=embedded)
    configs.apply_data(cfg, dataset)
    plan = lr_plan(cfg, gpus)
    if launcher == "pytorch" and not torch.cuda.is_available():
        import torch.distributed as dist

        # MMEngine's pytorch launcher starts with torch.cuda.set_device: without CUDA the process
        # group is made here (gloo, from the environment), and MMEngine uses it as it is
        if not dist.is_initialized():
            dist.init_process_group("gloo")
    runner = _runner(cfg)
    check = LrCheckHook(plan)
    runner.register_hook(check)
    record = next(h for h in runner.hooks if type(h).__name__ == "RunRecordHook")
    start = time.perf_counter()
    try:
        runner.train()
    finally:
        finite.STEP.value = None
    seconds = time.perf_counter() - start
    result = {
        "config": str(configs.find(config)),
        "loss_cls": loss_cls or "default",
        "loss_reg": loss_reg or "default",
        "data": dataset.description,
        "classes": list(dataset.classes),
        "iters": iters,
        "batch_size": cfg.train_dataloader.get("batch_size"),
        "gpus": plan.gpus,
        "effective_batch_size": plan.effective_batch,
        "lr": check.lr,
        "seed": seed,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "train_seconds": seconds,
        "metrics": record.metrics or {},
        **summarize(record.history),
        "history": record.history,
    }
    return result


# ----------------------------------------------------------------------------------------------
# several GPUs: one rank process per GPU
# ----------------------------------------------------------------------------------------------

def rank_commands(argv: list[str], gpus: int, *, master_port: int, launcher_pid: int,
                  threads: int | None = None, master_addr: str = "127.0.0.1",
                  python: str = sys.executable) -> list[tuple[list[str], dict[str, str]]]:
    """The command line and the environment additions of each rank of a training over ``gpus``
    GPUs of this machine: ``python -m bridge.train ARGV --launcher pytorch`` with the variables
    torchrun would set (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
    this checkout first on PYTHONPATH, the launcher's pid (:data:`LAUNCHER_PID`) and, with
    ``threads`` (CPU threads per rank), OMP_NUM_THREADS. Rank k uses GPU k of those
    CUDA_VISIBLE_DEVICES shows (MMEngine: ``torch.cuda.set_device(LOCAL_RANK)``)."""
    if gpus < 1:
        raise ValueError(f"gpus: a whole number >= 1, got {gpus}")
    if "--launcher" in argv:
        raise ValueError("argv must not hold --launcher: rank_commands adds it")
    checkout = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join([checkout] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    command = [python, "-m", "bridge.train", *argv, "--launcher", "pytorch"]
    ranks = []
    for k in range(gpus):
        env = {"RANK": str(k), "LOCAL_RANK": str(k), "WORLD_SIZE": str(gpus),
               "LOCAL_WORLD_SIZE": str(gpus), "MASTER_ADDR": master_addr,
               "MASTER_PORT": str(master_port), "PYTHONPATH": path,
               LAUNCHER_PID: str(launcher_pid)}
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(max(1, int(threads)))
        ranks.append((list(command), env))
    return ranks


def rank_argv(config, loss_cls, loss_reg, *, data: str, images, val: str, val_images,
              iters: int | None, batch_size: int | None, work_dir: Path, seed: int,
              progress: bool, explode_factor: float | None, out: Path,
              error_dir: Path) -> list[str]:
    """The ``python -m bridge.train`` arguments of every rank (see :func:`rank_commands`)."""
    argv = ["--config", str(configs.find(config)), "--data", data, "--val", val,
            "--work-dir", str(work_dir), "--seed", str(seed), "--out", str(out),
            "--error-dir", str(error_dir)]
    for flag, value in (("--loss-cls", loss_cls), ("--loss-reg", loss_reg),
                        ("--images", images), ("--val-images", val_images),
                        ("--iters", iters), ("--batch-size", batch_size),
                        ("--explode-factor", explode_factor)):
        if value is not None:
            argv += [flag, str(value)]
    if not progress:
        argv.append("--no-progress")
    return argv


def free_port() -> int:
    """A TCP port free on this machine now (the rendezvous of one training's ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train_spawned(config, loss_cls, loss_reg, *, data, images, val, val_images, iters,
                   batch_size, work_dir: Path, seed, progress, embedded, explode_factor,
                   gpus: int, threads: int | None) -> dict:
    if torch.cuda.is_available() and torch.cuda.device_count() < gpus:
        raise ValueError(f"--gpus-per-training {gpus}: this machine shows "
                         f"{torch.cuda.device_count()} GPU(s) (CUDA_VISIBLE_DEVICES="
                         f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); ask for at most that many")
    work_dir.mkdir(parents=True, exist_ok=True)
    dataset = prepare(data, images, val, val_images, work_dir=work_dir / "data", seed=seed,
                      embedded_spec=embedded)
    out = work_dir / "rank0-result.json"
    argv = rank_argv(config, loss_cls, loss_reg, data=f"coco:{dataset.train_ann}",
                     images=dataset.train_images, val=f"coco:{dataset.val_ann}",
                     val_images=dataset.val_images, iters=iters, batch_size=batch_size,
                     work_dir=work_dir, seed=seed, progress=progress,
                     explode_factor=explode_factor, out=out, error_dir=work_dir)
    threads = threads if threads is not None else torch.get_num_threads()
    result = launch(argv, gpus, work_dir=work_dir, out=out,
                    threads=max(1, threads // gpus))
    result["data"] = dataset.description
    return result


def _die_with_launcher() -> None:
    """In a rank started by :func:`launch`: be killed when the launcher dies (Linux), and stop
    at once if it is already gone."""
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(launcher):
        os._exit(1)  # the launcher died before the death signal was set: nobody wants this rank


def _error_file(error_dir: Path, rank: int) -> Path:
    return Path(error_dir) / f"rank{rank}-error.json"


def _write_error(error_dir: Path, rank: int, err: BaseException) -> None:
    """A rank's exception, for the launcher to raise again: its class, message, attributes."""
    import traceback

    attrs = {k: v for k, v in vars(err).items() if isinstance(v, (str, int, float, type(None)))}
    _error_file(error_dir, rank).write_text(json.dumps({
        "module": type(err).__module__, "type": type(err).__qualname__, "message": str(err),
        "attrs": attrs, "traceback": traceback.format_exc()}))


def _rebuild_error(info: dict, rank: int, world_size: int) -> BaseException:
    """The exception a rank wrote: the same class (so that the executor and main() classify it as
    they would in one process), message and simple attributes; RuntimeError if the class cannot
    be imported here. Its note holds the rank's traceback."""
    cls = None
    try:
        cls = getattr(importlib.import_module(info["module"]), info["type"])
    except (ImportError, AttributeError):
        pass
    if isinstance(cls, type) and issubclass(cls, Exception):
        err = cls.__new__(cls)
        Exception.__init__(err, info["message"])
        for key, value in info.get("attrs", {}).items():
            setattr(err, key, value)
    else:
        err = RuntimeError(f"{info['type']}: {info['message']}")
    err.add_note(f"raised by rank {rank} of {world_size}; its traceback:\n{info['traceback']}")
    return err


def launch(argv: list[str], gpus: int, *, work_dir: Path, out: Path,
           threads: int | None = None, poll_s: float = 0.2) -> dict:
    """Run a training's ``gpus`` ranks (:func:`rank_commands`) and return rank 0's result.

    The ranks stay in this process's process group and die with this process; when one rank
    ends with an error, the others are killed at once (they would wait for it in a collective
    until NCCL's timeout) and its exception is raised here.

    Raises:
      the exception of the first rank that failed (see :func:`_rebuild_error`);
      CrashedError: a rank ended without leaving an exception (a signal, os._exit).
    """
    for k in range(gpus):  # a retry in the same folder must not find the last attempt's files
        _error_file(work_dir, k).unlink(missing_ok=True)
    Path(out).unlink(missing_ok=True)
    commands = rank_commands(argv, gpus, master_port=free_port(), launcher_pid=os.getpid(),
                             threads=threads)
    print(f"launching {gpus} ranks: {shlex.join(commands[0][0][1:])}", file=sys.stderr,
          flush=True)
    procs: list[subprocess.Popen] = []
    failed: int | None = None
    try:
        for command, extra in commands:
            procs.append(subprocess.Popen(command, env={**os.environ, **extra}))
        while failed is None:
            codes = [p.poll() for p in procs]
            failed = next((k for k, c in enumerate(codes) if c not in (None, 0)), None)
            if failed is None and all(c == 0 for c in codes):
                break
            if failed is None:
                time.sleep(poll_s)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
    if failed is not None:
        path = _error_file(work_dir, failed)
        if path.is_file():
            raise _rebuild_error(json.loads(path.read_text()), failed, gpus)
        code = procs[failed].returncode
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        raise CrashedError(f"rank {failed} of {gpus} ended with {how} and left no error (killed "
                           "by the OS, e.g. for memory, or a crash in native code); see the "
                           "training's log")
    if not Path(out).is_file():
        raise CrashedError(f"rank 0 ended without writing its result {out}")
    return json.loads(Path(out).read_text())


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------

def print_config(cfg, plan: LrPlan, *, data: str, full: bool = False, file=None) -> None:
    """The key parts of a training's final config (without its data, which a training resolves
    from ``data``), the effective batch and the lr after scaling; ``full``: the whole config."""
    file = file or sys.stdout
    heads = configs.detection_heads(cfg.model)
    loop = cfg.train_cfg
    if loop.get("type") == "IterBasedTrainLoop":
        schedule = f"{loop['max_iters']} iterations"
    else:
        schedule = f"{loop.get('max_epochs')} epochs ({loop.get('type')})"
    warm = [s for s in (cfg.get("param_scheduler") or []) if s.get("type") == "LinearLR"]
    lines = [
        f"config: {cfg.filename}",
        f"model: {cfg.model.get('type')}; " + "; ".join(
            f"{head.get('type')}: loss_cls {head.get('loss_cls', {}).get('type')} "
            f"{head.get('loss_cls', {}).get('formula', '')}".rstrip() +
            f", loss_bbox {head.get('loss_bbox', {}).get('type')} "
            f"{head.get('loss_bbox', {}).get('formula', '')}".rstrip() for head, _ in heads),
        f"schedule: {schedule}" + (f", warm-up LinearLR x{warm[0]['start_factor']:g} over "
                                   f"{warm[0]['end']} iterations" if warm else ""),
        f"batch per GPU: {plan.batch_per_gpu}",
        f"GPUs (processes): {plan.gpus}" + (
            f", one rank each (MMEngine launcher pytorch, backend "
            f"{(cfg.get('env_cfg') or {}).get('dist_cfg', {}).get('backend', 'nccl')}; gloo on a "
            "machine without CUDA)" if plan.gpus > 1 else ""),
        f"effective batch: {plan.effective_batch} images per step",
        f"auto_scale_lr: {dict(cfg.get('auto_scale_lr') or {}) or 'none'}",
        f"learning rate: {plan.describe_lr()}",
        f"data: {data} (resolved when training)",
    ]
    print("\n".join(lines), file=file)
    if full:
        print("\n# the whole config\n" + cfg.pretty_text, file=file)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridge.train",
        description="Train a detector with searched losses, evaluate COCO mAP (pycocotools) and "
                    "write the metrics as JSON.",
        epilog="Exit status: 0 done; 2 bad arguments, config, formula or data; 3 the formula "
               "produced NaN or inf during training.")
    p.add_argument("--config", required=True, help="config file, or a bridge config's name")
    p.add_argument("--loss-cls", default=None, metavar="FORMULA",
                   help="classification loss: formula text or library name (default: config's)")
    p.add_argument("--loss-reg", default=None, metavar="FORMULA",
                   help="box regression loss: formula text or library name (default: config's)")
    p.add_argument("--data", default="embedded",
                   help="embedded[:SIZE] | coco:FILE.json | voc:ROOT[:SPLIT] | bdd:FILE.json")
    p.add_argument("--images", default=None, help="image folder of --data (coco, bdd)")
    p.add_argument("--val", default=None,
                   help="a data spec, proxy:N (hold out N training images) or train")
    p.add_argument("--val-images", default=None, help="image folder of --val (coco, bdd)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: config)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per GPU and step (default: config)")
    p.add_argument("--gpus-per-training", type=int, default=1, metavar="N",
                   help="train on N GPUs of this machine, one rank process each, with MMEngine's "
                        "distributed launcher; the effective batch is N x --batch-size and a "
                        "config with auto_scale_lr scales its lr to it (default 1)")
    p.add_argument("--explode-factor", type=float, default=None, metavar="F",
                   help="abort when the loss exceeds F times its starting scale (default: never)")
    p.add_argument("--work-dir", default=None, help="default: runs/<config>-<time>")
    p.add_argument("--out", default=None, help="metrics JSON (default: WORK_DIR/metrics.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", nargs="?", const="summary", choices=["summary", "full"],
                   help="print the final config's key parts (full: and the whole config), with "
                        "the effective batch and the learning rate after scaling; no training")
    p.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                   help="pytorch: this process is one rank of a distributed training (started by "
                        "--gpus-per-training or by torchrun); default none")
    p.add_argument("--error-dir", default=None, metavar="DIR",
                   help="(ranks) write this rank's exception to DIR/rank<RANK>-error.json")
    p.add_argument("--traceback", action="store_true",
                   help="on an error, show the full traceback instead of the one-line message")
    return p


def _print_config(args) -> int:
    gpus = world()[1] if args.launcher == "pytorch" else args.gpus_per_training
    # built as for one process: the same config but for the launcher, which print_config names
    cfg = build_config(args.config, args.loss_cls, args.loss_reg, iters=args.iters,
                       batch_size=args.batch_size, seed=args.seed,
                       work_dir=args.work_dir or "runs/print-config")
    print_config(cfg, lr_plan(cfg, gpus), data=args.data, full=args.print_config == "full")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = 0
    if args.launcher == "pytorch":
        _die_with_launcher()
        rank = int(os.environ.get("RANK", 0))
    work_dir = Path(args.work_dir) if args.work_dir else \
        Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        if args.gpus_per_training < 1:
            raise ValueError(f"--gpus-per-training {args.gpus_per_training}: a whole number >= 1 "
                             "(the GPUs of this machine one training spans)")
        if args.print_config:
            return _print_config(args)
        if args.gpus_per_training > 1 and not torch.cuda.is_available():
            print(f"no CUDA device: the {args.gpus_per_training} ranks run on CPU (gloo)",
                  file=sys.stderr)
        result = train(args.config, args.loss_cls, args.loss_reg, data=args.data,
                       images=args.images, val=args.val, val_images=args.val_images,
                       iters=args.iters, batch_size=args.batch_size, work_dir=work_dir,
                       seed=args.seed, progress=not args.no_progress,
                       explode_factor=args.explode_factor,
                       gpus_per_training=args.gpus_per_training, launcher=args.launcher)
    except Exception as e:
        if args.error_dir is not None:
            _write_error(Path(args.error_dir), rank, e)
            if LAUNCHER_PID in os.environ and not args.traceback:
                return 1  # the launcher raises it, once for all ranks
        if args.traceback:
            raise
        if isinstance(e, finite.NonFiniteLossError):
            print(f"error: {e}", file=sys.stderr)
            return 3
        if isinstance(e, (DataError, jaxloss.FormulaError, FileNotFoundError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, (ValueError, TypeError)):
            print(f"error: {type(e).__name__}: {e}\n(run with --traceback to see where)",
                  file=sys.stderr)
            return 2
        raise
    if rank != 0:
        return 0
    out = Path(args.out) if args.out else work_dir / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if LAUNCHER_PID in os.environ:
        return 0  # the launcher reports the result
    metrics = result["metrics"]
    print(f"bbox mAP {metrics.get('coco/bbox_mAP', float('nan')):.4f} "
          f"(AP50 {metrics.get('coco/bbox_mAP_50', float('nan')):.4f}) after "
          f"{len(result['history'])} steps, {result['train_seconds']:.0f} s; loss "
          f"{result.get('loss_first', float('nan')):.3f} → {result.get('loss_last', float('nan')):.3f}"
          f"; batch {result['batch_size']} x {result['gpus']} GPU(s), lr {result['lr']:g}"
          f"; metrics in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

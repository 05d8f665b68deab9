"""The detector stages of the search (paper §3.2.3 and the proxy task), plugged into
``jaxloss.search`` through the ``jaxloss.stages`` entry point.

* ``d_verify`` — the model optimization simulation: the chosen detector (Faster R-CNN for ``cls``,
  FCOS for ``cls_binary`` and ``reg`` by default) trains with the candidate loss on D_verify (one
  image per category of the training set, at least ``verify_min_images``) for ``verify_iters``
  iterations and is tested on it; a candidate whose D_verify AP is below the threshold (less
  VERIFY_SLACK, 10%, for the noise of such short trainings) is rejected (``below_threshold``). The
  threshold is the D_verify AP of the previous generation's top loss; in the first generation, that
  of the initial loss L_I (measured in generation 0).
* ``proxy`` — the proxy task: training on the proxy training set (the training set minus a random
  held-out validation subset, as the paper's 10k images) for ``proxy_epochs`` epochs (at least
  MIN_PROXY_ITERS iterations), COCO mAP (pycocotools) on the held-out subset. That mAP is the
  candidate's fitness.

The search puts a cut before each (Algorithm 1): the best ``verify_k`` by simulation score go to
D_verify, the best ``top_k`` of those that pass by D_verify AP go to the proxy task.

Every training runs in its own worker (:mod:`bridge.executor`, local processes or Ray tasks) with
a time limit. A failure of the loss (``nonfinite``: a NaN or ±inf loss, ``exploded``: a loss that
runs away past ``explode_factor`` times its first value, ``error``: the training raised) is final:
the candidate is marked failed with the reason and the search goes on. A failure of the machine
(MACHINE_FAILURES: ``timeout``, ``crashed``, ``out_of_memory``, ``no_start``) is retried once, at
once, on fresh workers; only a second failure marks the candidate failed (both reasons are in its
log record). Results are cached by the candidate's structural hash (and everything else that
decides the training) in ``RUN_DIR/detector_results.jsonl``, written as each training ends, so
nothing is trained twice, also across a resume; machine failures are kept for the record but a
resumed run trains those candidates again. A training in flight when the search is interrupted
(Ctrl-C, SIGTERM) is recorded nowhere, and ``--resume`` runs it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bridge.executor import (
    ExecutorSetupError,
    LocalExecutor,
    Outcome,
    RayExecutor,
    Task,
    default_workers,
    local_gpu_plan,
    visible_gpus,
)
from jaxloss.genome.population import Population
from jaxloss.search.settings import SettingsError
from jaxloss.search.stages import Stage, StageOutcome, function_identity

DEFAULT_CONFIG = {"cls": "faster-rcnn_r18-tiny", "cls_binary": "fcos_r18-tiny",
                  "reg": "fcos_r18-tiny"}
LOSS_SLOT = {"cls": "loss_cls", "cls_binary": "loss_cls", "reg": "loss_reg"}
MIN_PROXY_ITERS = 1200
"""The proxy training is ``proxy_epochs`` epochs but at least this many iterations: on COCO one
epoch is thousands of iterations; on the embedded default (192 proxy-training images at 2 per
step) it would be 96. Measured on the embedded default (tiny FCOS, FL, 2-core CPU): 600 steps left
the detector taking off (mAP 0.075 ± 0.017 over 4 seeds, 22% seed noise); 1,200 steps gave
0.179 ± 0.019 (11%). See docs/proxy-fidelity.md."""
MACHINE_FAILURES = frozenset({"timeout", "crashed", "out_of_memory", "no_start"})
"""Outcome reasons that say nothing about the loss: retried once at once, not final on resume."""
VERIFY_SLACK = 0.1
"""A candidate passes D_verify with at least (1 - VERIFY_SLACK) times the threshold AP: trainings
of a few dozen iterations on a handful of images are noisy, and an equally good loss should not
fail by chance half the time."""


@dataclass(frozen=True)
class DetectorSettings:
    """What the detector stages need from the search settings."""

    branch: str
    config: str
    data: str
    images: str | None
    verify_iters: int
    verify_min_images: int
    proxy_epochs: int
    proxy_val: int | None
    batch_size: int | None
    executor: str
    workers: int
    ray_address: str | None
    timeout_s: float
    explode_factor: float
    seed: int
    initial: str
    task: str = "bridge.search_stages:train_candidate"
    gpus_per_training: int | None = None  # None: one GPU per training where there are GPUs

    @classmethod
    def from_search(cls, s: dict) -> "DetectorSettings":
        from jaxloss.space.library import INITIAL_LOSS, LIBRARY

        return cls(
            branch=s["branch"], config=s.get("detector_config") or DEFAULT_CONFIG[s["branch"]],
            data=s.get("data") or "embedded", images=s.get("images"),
            verify_iters=int(s.get("verify_iters") or 40),
            verify_min_images=int(s.get("verify_min_images") or 8),
            proxy_epochs=int(s.get("proxy_epochs") or 1), proxy_val=s.get("proxy_val"),
            batch_size=s.get("batch_size"), executor=s.get("executor") or "local",
            workers=int(s.get("workers") or _default_workers(s)), ray_address=s.get("ray_address"),
            timeout_s=float(s.get("train_timeout") or 1800.0),
            explode_factor=float(s.get("explode_factor") or 1000.0), seed=int(s.get("seed", 0)),
            initial=s.get("initial") or str(LIBRARY[INITIAL_LOSS[s["branch"]]]),
            task=s.get("detector_task") or "bridge.search_stages:train_candidate",
            gpus_per_training=s.get("gpus_per_training"))


def _default_workers(s: dict) -> int:
    """``--workers`` left out: see :func:`bridge.executor.default_workers` (Ray tasks go wherever
    the cluster has room, so the number matters only for the threads of each)."""
    if (s.get("executor") or "local") != "local":
        return 1
    return default_workers(s.get("gpus_per_training"), visible_gpus())


def check_detector_config(d: DetectorSettings) -> None:
    """Load the detector config and put the initial loss into it, as every training will, so that
    a missing config, a head the bridge cannot search or a config of the other branch stops the
    search before anything runs (not after the first generation, in a worker).

    Raises:
      SettingsError: naming ``--detector-config`` and what is wrong with it.
    """
    from bridge import config as configs

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


# ----------------------------------------------------------------------------------------------
# data: D_verify and the proxy split, written once per run
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchData:
    """COCO files of the search's data sets (in RUN_DIR/data) and their image folder."""

    images: str
    verify: str
    proxy_train: str
    proxy_val: str
    num_proxy_train: int
    description: str


def prepare_search_data(d: DetectorSettings, run_dir: Path) -> SearchData:
    """D_verify (one image per category, at least ``verify_min_images``) and the proxy split of
    the training set."""
    from bridge.data import coco as cocofile
    from bridge.data import prepare
    from bridge.data.sampling import d_verify, proxy_split

    out = run_dir / "data"
    source = prepare(d.data, d.images, val="train", work_dir=out / "source", seed=d.seed)
    train = cocofile.load(source.train_ann)
    n = len(train["images"])
    held = d.proxy_val or min(10_000, max(1, n // 4))
    if not 1 <= held < n:
        raise SettingsError(f"--proxy-val {held}: must be between 1 and {n - 1} (the training "
                            f"set has {n} images)")
    proxy_train, proxy_val = proxy_split(train, held, d.seed)
    verify = d_verify(proxy_train, d.seed, min_images=d.verify_min_images)
    paths = {name: str(cocofile.write(coco, out / f"{name}.json"))
             for name, coco in (("verify", verify), ("proxy_train", proxy_train),
                                ("proxy_val", proxy_val))}
    return SearchData(str(source.train_images), paths["verify"], paths["proxy_train"],
                      paths["proxy_val"], len(proxy_train["images"]),
                      f"{source.description}; D_verify {len(verify['images'])} images, proxy "
                      f"{len(proxy_train['images'])} train / {held} val")


# ----------------------------------------------------------------------------------------------
# the worker side
# ----------------------------------------------------------------------------------------------

def train_candidate(config: str, branch: str, formula: str, data: str, images: str, val: str,
                    iters: int, work_dir: str, seed: int, batch_size: int | None,
                    explode_factor: float, threads: int, gpus_per_training: int = 1) -> dict:
    """Train one detector with one candidate loss and return its COCO metrics (in a worker).
    ``gpus_per_training`` > 1: one rank process per GPU the worker sees (``batch_size`` per GPU,
    ``threads`` shared among the ranks)."""
    import torch

    from bridge.train import train

    torch.set_num_threads(max(1, threads))
    losses = {LOSS_SLOT[branch]: formula}
    record = train(config, loss_cls=losses.get("loss_cls"), loss_reg=losses.get("loss_reg"),
                   data=data, images=images, val=val, val_images=images, iters=iters,
                   work_dir=work_dir, seed=seed, progress=False, batch_size=batch_size,
                   explode_factor=explode_factor, gpus_per_training=gpus_per_training,
                   threads=threads)
    metrics = record.get("metrics", {})
    return {"mAP": float(metrics.get("coco/bbox_mAP", 0.0)),
            "mAP_50": float(metrics.get("coco/bbox_mAP_50", 0.0)),
            "loss_first": record.get("loss_first"), "loss_last": record.get("loss_last"),
            "train_seconds": record.get("train_seconds")}


# ----------------------------------------------------------------------------------------------
# the cache
# ----------------------------------------------------------------------------------------------

class ResultCache:
    """Training outcomes by task key, appended to a JSON-lines file as each training ends."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that training runs again
                if entry.get("reason") in MACHINE_FAILURES:
                    continue  # the machine's fault, in an earlier process: this one tries again
                self.entries[entry["task"]] = entry

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, outcome: Outcome, extra: dict) -> dict:
        entry = {"task": key, "result": outcome.result, "reason": outcome.reason,
                 "message": _first_line(outcome.message), "seconds": outcome.seconds, **extra}
        self.entries[key] = entry
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


# ----------------------------------------------------------------------------------------------
# the stages
# ----------------------------------------------------------------------------------------------

def make_executor(d: DetectorSettings):
    """The executor of the trainings: local workers with ``gpus_per_training`` GPUs of this machine
    each, or Ray tasks with that many GPUs of one node each (see
    :func:`bridge.executor.local_gpu_plan` and :func:`bridge.executor.ray_gpu_plan`).

    Raises:
      SettingsError: GPUs asked for that this machine or the Ray cluster does not have.
    """
    threads = max(1, (os.cpu_count() or 1) // d.workers)
    # a worker importing JAX leaves torch the GPU memory (JAX takes most of it by default)
    prealloc = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        if d.executor == "ray":  # thread counts are the node's business, not this machine's
            return RayExecutor(address=d.ray_address, gpus_per_task=d.gpus_per_training,
                               env=prealloc)
        gpus, per_worker = local_gpu_plan(d.workers, d.gpus_per_training, visible_gpus())
    except ExecutorSetupError as err:
        raise SettingsError(f"--gpus-per-training: {err}") from None
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **prealloc}
    return LocalExecutor(workers=d.workers, gpus=gpus or None, gpus_per_worker=per_worker,
                         env=env)


class DetectorStage(Stage):
    """Shared machinery: one training per distinct candidate, cached, run by the executor."""

    scores = True

    def __init__(self, d: DetectorSettings, data: SearchData, run_dir: Path, cache: ResultCache,
                 executor, log):
        self.d, self.data, self.run_dir, self.cache, self.executor, self.log = \
            d, data, run_dir, cache, executor, log

    # what a training of this stage looks like
    def training(self) -> dict:
        raise NotImplementedError

    def task_key(self, loss_key: str, seed: int) -> str:
        spec = dict(self.training(), stage=self.name, loss=loss_key, config=self.d.config,
                    branch=self.d.branch, seed=seed, batch_size=self.d.batch_size,
                    task=self.d.task)
        if (self.d.gpus_per_training or 1) > 1:  # only then: the keys of 1-GPU runs stay the same
            spec["gpus_per_training"] = self.d.gpus_per_training
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    def train(self, formulas: dict[str, str], seed: int | None = None) -> dict[str, dict]:
        """Train every (loss key → formula) not in the cache with ``seed`` (default: the search's
        seed, the same for every candidate); returns loss key → cache entry.

        A training that fails for the machine (MACHINE_FAILURES) is run once more at once, on
        fresh workers; the entry then lists both attempts' reasons under ``attempts``.

        Raises:
          RuntimeError: trainings whose workers never started, twice: nothing is recorded for
            them and ``--resume`` trains them once the workers can start.
        """
        seed = self.d.seed if seed is None else int(seed)
        keys = {k: self.task_key(k, seed) for k in formulas}
        todo = [k for k in formulas if self.cache.get(keys[k]) is None]
        if todo:
            self.log(f"    {self.name}: {len(todo)} training(s), {len(formulas) - len(todo)} "
                     "from the cache")
            first = self._attempt(todo, formulas, keys, seed)
            again = [k for k in todo if first[k].reason in MACHINE_FAILURES]
            second: dict[str, Outcome] = {}
            if again:
                self.log(f"    {self.name}: {len(again)} training(s) failed for the machine "
                         f"({', '.join(sorted({first[k].reason for k in again}))}): once more on "
                         "fresh workers")
                self.executor.close()  # the next map starts fresh workers
                second = self._attempt(again, formulas, keys, seed)
            unstarted = [second[k].message for k in again if second[k].reason == "no_start"]
            for k in todo:
                outcome = second.get(k, first[k])
                if outcome.reason == "no_start":
                    continue  # never ran: nothing to record
                attempts = [first[k].reason] + ([second[k].reason] if k in second else [])
                extra = {"stage": self.name, "formula": formulas[k], "seed": seed}
                if len(attempts) > 1:
                    extra["attempts"] = attempts
                    extra["first_message"] = _first_line(first[k].message)
                self.cache.put(keys[k], outcome, extra)
            if unstarted:
                raise RuntimeError(
                    f"{len(unstarted)} {self.name} training(s) never started, twice: "
                    f"{unstarted[0]}. The workers could not start (a broken environment, or a "
                    "machine too busy to start them in time); nothing was recorded for those "
                    "candidates, so --resume trains them once the workers can start")
        return {k: self.cache.get(keys[k]) for k in formulas}

    def _attempt(self, todo: list[str], formulas: dict[str, str], keys: dict[str, str],
                 seed: int) -> dict[str, Outcome]:
        """One run of the trainings of ``todo`` (loss keys); returns loss key → outcome."""
        threads = max(1, (os.cpu_count() or 1) // self.d.workers)
        folder = {k: self.run_dir / "trainings" / f"{self.name}-{keys[k]}" for k in todo}
        gpus = self.d.gpus_per_training or 1  # passed only when > 1: task functions without it work
        multi_gpu = {"gpus_per_training": gpus} if gpus > 1 else {}
        tasks = [Task(keys[k], self.d.task, dict(
            config=self.d.config, branch=self.d.branch, formula=formulas[k],
            work_dir=str(folder[k]), seed=seed, batch_size=self.d.batch_size,
            explode_factor=self.d.explode_factor, threads=threads, **self.training(),
            **multi_gpu), timeout_s=self.d.timeout_s, log_path=str(folder[k] / "train.log"))
            for k in todo]
        by_task = {keys[k]: k for k in todo}

        def show(outcome: Outcome) -> None:
            formula = formulas[by_task[outcome.key]]
            if outcome.ok:
                self.log(f"      ok, mAP {outcome.result['mAP']:.4f} ({outcome.seconds:.0f} s) "
                         f"{formula}")
            else:
                self.log(f"      failed: {outcome.reason} ({outcome.seconds:.0f} s) {formula}"
                         + (f": {_first_line(outcome.message)}"
                            if outcome.reason in MACHINE_FAILURES else ""))

        outcomes = self.executor.map(tasks, on_done=show)
        return {by_task[o.key]: o for o in outcomes}

    def run(self, pop: Population, indices: np.ndarray, context: dict) -> StageOutcome:
        losses = {int(i): pop[int(i)] for i in indices}
        # One training per function: candidates with the same simulation fingerprint compute the
        # same loss (written differently), and the top-k cuts already count them once; the first
        # of each group by index is trained and the others take its result.
        first: dict = {}
        trained = {i: first.setdefault(function_identity(pop, i, context), losses[i])
                   for i in sorted(losses)}
        formulas = {l.key: str(l) for l in first.values()}
        entries = self.train(formulas)
        entry = [entries[trained[int(i)].key] for i in indices]
        score = np.array([e["result"]["mAP"] if e["reason"] is None else np.nan for e in entry],
                         np.float32)
        reasons = [e["reason"] for e in entry]
        details = []
        for i, e in zip(indices, entry):
            info = {"attempts": e["attempts"]} if e.get("attempts") else {}
            if trained[int(i)].key != losses[int(i)].key:
                info["same_function_as"] = str(trained[int(i)])
            details.append(info or None)
        passed = np.array([r is None for r in reasons], bool)
        passed, reasons = self.judge(score, passed, reasons, context)
        context.setdefault("detector", {})[self.name] = {
            int(i): float(s) for i, s in zip(indices, score) if not math.isnan(s)}
        return StageOutcome(indices, passed, score, reasons, details)

    def judge(self, score, passed, reasons, context):
        return passed, reasons

    def remeasure(self, pop, seeds):
        """Each loss trained again with each seed, with this stage's protocol."""
        losses = pop.losses()
        formulas = {l.key: str(l) for l in losses}
        out = np.full((len(losses), len(seeds)), np.nan, np.float32)
        for j, seed in enumerate(seeds):
            entries = self.train(formulas, seed=int(seed))
            for i, loss in enumerate(losses):
                entry = entries[loss.key]
                if entry["reason"] is None:
                    out[i, j] = entry["result"]["mAP"]
        return out


class VerifyStage(DetectorStage):
    """Train and test on D_verify; reject below the previous generation's top loss."""

    name = "d_verify"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threshold: float | None = None

    def training(self) -> dict:
        return {"data": f"coco:{self.data.verify}", "images": self.data.images,
                "val": "train", "iters": self.d.verify_iters}

    def judge(self, score, passed, reasons, context):
        if context["generation"] == 0:  # L_I: its AP becomes the first threshold
            return passed, reasons
        if self.threshold is None:
            raise RuntimeError("the D_verify threshold is not set: the initial loss is measured "
                               "(generation 0) before any candidate")
        limit = self.threshold * (1.0 - VERIFY_SLACK)
        below = passed & (np.nan_to_num(score, nan=-1.0) < limit)
        reasons = [("below_threshold" if b else r) for b, r in zip(below, reasons)]
        return passed & ~below, reasons

    def end_generation(self, pop, fitness, context):
        scored = np.flatnonzero(~np.isnan(fitness))
        verify = context.get("detector", {}).get(self.name, {})
        if scored.size:
            top = int(scored[np.lexsort((scored, -fitness[scored]))[0]])
            if top in verify:
                self.threshold = verify[top]
                whose = ("the initial loss" if context["generation"] == 0
                         else "this generation's top loss")
                self.log(f"    d_verify threshold for the next generation: "
                         f"{self.threshold:.4f} ({whose})")

    def state(self):
        return {"threshold": self.threshold}

    def load_state(self, state):
        self.threshold = state.get("threshold")

    def describe(self):
        return (f"D_verify simulation ({self.d.config}, {self.d.verify_iters} iterations, "
                f"at least {self.d.verify_min_images} images)")


class ProxyStage(DetectorStage):
    """Train on the proxy training set, COCO mAP on the held-out validation subset."""

    name = "proxy"

    def training(self) -> dict:
        # images per step: per GPU times the GPUs of a training (so an epoch takes fewer steps)
        batch = (self.d.batch_size or 2) * (self.d.gpus_per_training or 1)
        iters = max(MIN_PROXY_ITERS,
                    self.d.proxy_epochs * math.ceil(self.data.num_proxy_train / batch))
        return {"data": f"coco:{self.data.proxy_train}", "images": self.data.images,
                "val": f"coco:{self.data.proxy_val}", "iters": iters}

    def describe(self):
        return (f"proxy task ({self.d.config}, {self.training()['iters']} iterations: "
                f"{self.d.proxy_epochs} epoch(s), at least {MIN_PROXY_ITERS})")


def detector_stages(settings: dict, run_dir, log) -> list[Stage]:
    """The entry point: [D_verify stage, proxy stage] for a search with these settings; the proxy
    stage alone with ``verify`` off (an ablation)."""
    d = DetectorSettings.from_search(settings)
    check_detector_config(d)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    executor = make_executor(d)  # before the data: GPUs that are not there stop the search at once
    log(f"detector trainings: {executor.describe()}")
    data = prepare_search_data(d, run_dir)
    log(f"detector data: {data.description}")
    (run_dir / "detector_settings.json").write_text(json.dumps(asdict(d), indent=2))
    cache = ResultCache(run_dir / "detector_results.jsonl")
    common = (d, data, run_dir, cache, executor, log)
    if settings.get("verify", True) is False:
        return [ProxyStage(*common)]
    return [VerifyStage(*common), ProxyStage(*common)]

"""Training dispatch of the detector stages: the executor of the trainings, and the base of both
stages: one training per distinct function, cached (:mod:`bridge.search_stages.cache`), a
failure of the machine retried once on fresh workers, run by the executor."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from bridge import executor as executors
from bridge.executor import ExecutorSetupError, LocalExecutor, Outcome, RayExecutor, Task
from bridge.search_stages.cache import MACHINE_FAILURES, ResultCache, first_line
from bridge.search_stages.data import SearchData
from bridge.search_stages.final import remeasure
from bridge.search_stages.settings import DetectorSetup
from jaxloss.genome.population import Population
from jaxloss.search.settings import SettingsError
from jaxloss.search.stages import Stage, StageOutcome, training_identities


def make_executor(d: DetectorSetup):
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
        gpus, per_worker = executors.local_gpu_plan(d.workers, d.gpus_per_training,
                                                    executors.visible_gpus())
    except ExecutorSetupError as err:
        raise SettingsError(f"--gpus-per-training: {err}") from None
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **prealloc}
    return LocalExecutor(workers=d.workers, gpus=gpus or None, gpus_per_worker=per_worker,
                         env=env)


class DetectorStage(Stage):
    """Shared machinery: one training per distinct candidate, cached, run by the executor."""

    scores = True

    def __init__(self, d: DetectorSetup, data: SearchData, run_dir: Path, cache: ResultCache,
                 executor, log):
        self.d, self.data, self.run_dir, self.cache, self.executor, self.log = \
            d, data, run_dir, cache, executor, log

    # what a training of this stage looks like
    def training(self) -> dict:
        raise NotImplementedError

    def seeds(self) -> list[int]:
        """The seeds each candidate is trained with in the search: the search's seed."""
        return [self.d.seed]

    def seeds_used(self) -> list[int]:
        return self.seeds()

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
                    extra["first_message"] = first_line(first[k].message)
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
                         + (f": {first_line(outcome.message)}"
                            if outcome.reason in MACHINE_FAILURES else ""))

        outcomes = self.executor.map(tasks, on_done=show)
        return {by_task[o.key]: o for o in outcomes}

    def run(self, pop: Population, indices: np.ndarray, context: dict) -> StageOutcome:
        losses = {int(i): pop[int(i)] for i in indices}
        # One training per function: candidates with the same gradient train identically (the
        # top-k cuts already count them once); the first of each group by index is trained and
        # the others take its result.
        first: dict = {}
        order = sorted(losses)
        trained = {i: first.setdefault(ident, losses[i])
                   for i, ident in zip(order, training_identities(pop, order, context))}
        formulas = {l.key: str(l) for l in first.values()}
        seeds = self.seeds()
        by_seed = [self.train(formulas, seed=seed) for seed in seeds]
        score = np.full(len(indices), np.nan, np.float32)
        reasons, details = [], []
        for j, i in enumerate(indices):
            entries = [trainings[trained[int(i)].key] for trainings in by_seed]
            # a failed seed fails the candidate: a mean over the seeds that trained would be a
            # different measurement from the other candidates'
            failed = next((e for e in entries if e["reason"] is not None), None)
            reasons.append(None if failed is None else failed["reason"])
            if failed is None:
                score[j] = np.mean([e["result"]["mAP"] for e in entries])
            info = {}
            attempts = [a for e in entries for a in (e.get("attempts") or [])]
            if attempts:
                info["attempts"] = attempts
            if len(seeds) > 1:
                info["per_seed"] = {str(seed): (e["result"]["mAP"] if e["reason"] is None
                                                else None) for seed, e in zip(seeds, entries)}
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
        """Each loss trained again with each seed, with this stage's protocol (see
        :func:`bridge.search_stages.final.remeasure`)."""
        return remeasure(self, pop, seeds)

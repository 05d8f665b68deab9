"""The search loop (paper §3.2.1, Algorithm 1): evolve, filter, rank, checkpoint, report.

Generation 0 measures the initial loss L_I with every scoring stage, exactly as a candidate
(simulation, D_verify, proxy task): its fitness makes it the first parent, its D_verify AP the
first D_verify threshold, and the report compares the search's best with it.

One generation: the strategy proposes ``population`` candidates (``ask``, parents drawn only among
measured losses); the funnel judges them stage by stage (:mod:`jaxloss.search.stages`): checks,
simulation, the best ``verify_k`` by simulation score to D_verify, the best ``top_k`` of those by
D_verify AP to the proxy task; the fitness (minus the score of the last scoring stage) goes back to
the strategy (``tell``), which keeps the best ``parents``; the archive, the per-candidate log
(``candidates.jsonl``) and a checkpoint are written. Every random choice flows from ``--seed``; a
resumed run continues from the last checkpoint and ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.engine.compile_cache import current_folder
from jaxloss.engine.devices import shard_count
from jaxloss.errors import InputError, Interrupted
from jaxloss.evolution.base import initial_parents, num_filled
from jaxloss.evolution.cse import LossEvolution
from jaxloss.evolution.random import RandomSearch
from jaxloss.filters import equivalence
from jaxloss.genome.population import Population, from_losses
from jaxloss.search import archive as archives
from jaxloss.search import checkpoint, report
from jaxloss.search.record import RunRecord
from jaxloss.search.settings import Settings
from jaxloss.search.stages import (PropertyStage, SimulationStage, Stage, StageOutcome, TopKStage,
                                   load_detector_stages)
from jaxloss.search.stats import paired_interval, spread
from jaxloss.space.resolve import as_loss


CHECKPOINT_FORMAT = 2
"""Version of what a checkpoint holds (2: the evolution state as Population rows, every stage's
state under its own name); a run folder written with another is refused on --resume."""


class RunFolderError(InputError):
    """A run folder that cannot be used as asked (a run already there, no usable checkpoint)."""


def _say(*args, **kwargs):
    kwargs.setdefault("flush", True)
    print(*args, **kwargs)


class Search:
    """A search run: settings, run folder, strategy, stages and state."""

    def __init__(self, settings: Settings, log=_say):
        self.s = settings
        self.dir = settings.run_dir
        self.log = log
        if settings.strategy == "random":
            self.strategy = RandomSearch(
                population_size=settings.population, branch=settings.branch,
                capacity=settings.capacity, num_parents=settings.parents)
        else:
            self.strategy = LossEvolution(
                population_size=settings.population, branch=settings.branch,
                capacity=settings.capacity, num_parents=settings.parents,
                p_crossover=settings.p_crossover, p_mutation=settings.p_mutation,
                tournament_size=settings.tournament_size)
        self.params = self.strategy.default_params
        self.stages: list[Stage] = [PropertyStage(property_checks=settings.property_checks
                                                  and settings.strategy != "vanilla")]
        if settings.simulation:
            self.stages.append(SimulationStage())
        if settings.detector:
            detector = load_detector_stages(settings.to_json(), self.dir, log)
            # Algorithm 1's two cuts: the best verify_k by simulation score are trained on
            # D_verify, the best top_k of those by D_verify AP go to the proxy task
            cuts = [TopKStage(settings.verify_k, name="verify_k")] * (len(detector) - 1) + [
                TopKStage(settings.top_k, name="top_k")]
            for cut, stage in zip(cuts, detector):
                self.stages += [cut, stage]
        scoring = [st for st in self.stages if st.scores]
        self.fitness_stage = scoring[-1].name
        self.unit = "mAP" if self.fitness_stage == "proxy" else f"{self.fitness_stage} score"

    # -- state ------------------------------------------------------------------------------
    def initial_loss(self) -> Population:
        """L_I as a population of one."""
        loss = as_loss(self.s.initial_formula, self.s.branch, max_nodes=self.s.capacity)
        return from_losses([loss], self.s.capacity)

    def initial_state(self):
        """(generations done, strategy state, key, run record) before anything is measured; the
        state's parents are set by :meth:`measure_initial`."""
        key = jax.random.key(self.s.seed)
        key, k_init = jax.random.split(key)
        solutions, fitness = initial_parents(self.initial_loss(), jnp.inf, self.s.parents)
        state = self.strategy.init(k_init, solutions, fitness, self.params)
        return 0, state, key, RunRecord(settings=self.s.to_json())

    def _checkpoint(self, generation: int, state, key, record: RunRecord) -> None:
        """Save the state after ``generation`` generations: the strategy's state and the key, every
        stage's own state (JSON in the record, arrays beside it) and the run record."""
        record.stage_states = {st.name: st.state() for st in self.stages if st.state()}
        arrays = {
            "format": np.int32(CHECKPOINT_FORMAT),
            "population": np.asarray(state.population),
            "fitness": np.asarray(state.fitness),
            "best_solution": np.asarray(state.best_solution),
            "best_fitness": np.asarray(state.best_fitness),
            "generation_counter": np.asarray(state.generation_counter),
            "key": np.asarray(jax.random.key_data(key)),
        }
        stages = {st.name: st.arrays() for st in self.stages if st.arrays()}
        if stages:
            arrays["stages"] = stages
        checkpoint.save(self.dir, generation, arrays, record.to_json())

    def _restore(self, arrays: dict, document: dict):
        """(strategy state, key, run record) from a checkpoint; every stage restores its own
        state."""
        if int(np.asarray(arrays.get("format", -1))) != CHECKPOINT_FORMAT:
            raise RunFolderError(
                f"--resume {self.dir}: its checkpoints were written by another version of jaxloss "
                f"(checkpoint format {int(np.asarray(arrays.get('format', 1)))}, this version "
                f"reads {CHECKPOINT_FORMAT}). Nothing was changed; start over with --restart "
                "(keeps the old run in a previous-<time> folder) or another --out")
        _, state, _, _ = self.initial_state()
        state = state.replace(
            population=jnp.asarray(arrays["population"]),
            fitness=jnp.asarray(arrays["fitness"]),
            best_solution=jnp.asarray(arrays["best_solution"]),
            best_fitness=jnp.asarray(arrays["best_fitness"]),
            generation_counter=jnp.asarray(arrays["generation_counter"]))
        key = jax.random.wrap_key_data(jnp.asarray(arrays["key"], jnp.uint32))
        record = RunRecord.from_json(document)
        stored = arrays.get("stages", {})
        for st in self.stages:
            st.load_state(record.stage_states.get(st.name, {}))
            if st.name in stored:
                st.load_arrays(stored[st.name])
        return state, key, record

    # -- generation 0: the initial loss ----------------------------------------------------
    def measure_initial(self) -> tuple[object, dict, list]:
        """Measure L_I with every scoring stage, as a candidate is measured; its fitness makes it
        the first parent (the other parent slots stay empty).

        Returns:
          (strategy state with L_I as its one parent, the ``initial`` record of the report, the
          candidate log record of L_I).

        Raises:
          RuntimeError: L_I has no score from the last scoring stage (e.g. its proxy training
            failed): the search cannot rank anything against it.
        """
        pop = self.initial_loss()
        loss = pop[0]
        self.log(f"generation 0: the initial loss L_I, {loss}")
        indices = np.arange(1)
        score = np.full(1, np.nan, np.float32)
        context = {"generation": 0, "score": score}
        scores, reasons, details = {}, {}, {}
        for stage in (st for st in self.stages if st.scores):
            start = time.perf_counter()
            out: StageOutcome = stage.run(pop, indices, context)
            value = float(out.score[0]) if out.score is not None else float("nan")
            if not np.isnan(value):
                scores[stage.name] = value
                score[0] = value
            if not out.passed[0]:
                reasons[stage.name] = out.reasons[0]
            if out.details and out.details[0]:
                details[stage.name] = out.details[0]
            shown = "none" if np.isnan(value) else f"{value:.4f}"
            note = f", {out.reasons[0]}" if not out.passed[0] else ""
            self.log(f"  {stage.name:11s} L_I score {shown}{note}  "
                     f"{time.perf_counter() - start:.1f} s")
            if np.isnan(value):
                raise RuntimeError(
                    f"the initial loss {loss} got no {stage.name} score "
                    f"({out.reasons[0] or 'no score'}): every candidate is measured against it. "
                    "Check the detector, data and trainings (the run folder's trainings/*/"
                    "train.log), or give another --initial")
        fitness = scores[self.fitness_stage]
        for stage in self.stages:
            stage.end_generation(pop, np.array([fitness], np.float32), context)
        solutions, parent_fitness = initial_parents(pop, -fitness, self.s.parents)
        state = self.strategy.init(jax.random.key(self.s.seed), solutions, parent_fitness,
                                   self.params)
        initial = {"formula": str(loss), "key": loss.key, "fitness": fitness,
                   "unit": self.unit, "scores": scores, "reasons": reasons,
                   **{name: value for name, value in scores.items()}}
        record = {"generation": 0, "index": 0, "reason": None, "scores": scores, "score": fitness,
                  "fitness": fitness, "formula": str(loss), "key": loss.key, "initial": True,
                  **({"details": details} if details else {})}
        self.log(f"  L_I fitness: {fitness:.4f} {self.unit}")
        return state, initial, record

    # -- one generation ---------------------------------------------------------------------
    def propose(self, generation: int, key, state):
        """The generation's candidates (a Population [N]): the strategy's ``ask``, offspring of
        the parents or random genomes."""
        k_ask, _ = jax.random.split(key)
        return self.strategy.ask(k_ask, state, self.params)

    def evaluate(self, generation: int, pop: Population) -> tuple[np.ndarray, dict, list]:
        """Run the funnel on generation ``generation`` (1-based).

        Returns (fitness score [N]: the score of the last scoring stage for the candidates that
        passed every stage, NaN for the others; the funnel row; one record per candidate).
        """
        n = len(pop)
        survivors = np.arange(n)
        reasons: list = [None] * n
        score = np.full(n, np.nan, np.float32)
        stage_scores: list[dict] = [{} for _ in range(n)]
        details: list[dict] = [{} for _ in range(n)]
        rows = []
        context = {"generation": generation, "score": score}
        last_scoring = max((k for k, st in enumerate(self.stages) if st.scores), default=-1)
        for k, stage in enumerate(self.stages):
            start = time.perf_counter()
            out: StageOutcome = stage.run(pop, survivors, context)
            rows += stage.rows(out)
            for i, r in zip(out.indices, out.reasons):
                if r:
                    reasons[i] = r
            for i, d in zip(out.indices, out.details or []):
                if d:
                    details[i][stage.name] = d
            if stage.scores and out.score is not None:
                score[out.indices] = out.score
                for i, value in zip(out.indices, out.score):
                    if not np.isnan(value):
                        stage_scores[i][stage.name] = float(value)
            kept = out.indices[np.asarray(out.passed, bool)]
            self.log(f"  {stage.name:11s} {len(survivors):>7,} in  {len(kept):>7,} out  "
                     f"({_reason_text([r for r in out.reasons if r])})  "
                     f"{time.perf_counter() - start:.1f} s")
            survivors = kept
            if k == last_scoring:
                break
        final = np.full(n, np.nan, np.float32)
        final[survivors] = score[survivors]
        records = [{"generation": generation, "index": int(k), "reason": reasons[k],
                    "scores": stage_scores[k],
                    "score": None if np.isnan(score[k]) else float(score[k]),
                    "fitness": None if np.isnan(final[k]) else float(final[k]),
                   **({"details": details[k]} if details[k] else {})}
                   for k in range(n)]
        for stage in self.stages:
            stage.end_generation(pop, final, context)
        return final, {"generation": generation, "stages": rows}, records

    def final_seeds(self) -> list[int]:
        """Seeds the search never used: after ``seed`` and every seed a stage trained with (e.g.
        ``--proxy-seeds``); the simulation's task draw is 0."""
        start = max([self.s.seed, *(s for st in self.stages for s in st.seeds_used())]) + 1
        return [start + j for j in range(self.s.final_seeds)]

    def measure_final(self, record: RunRecord) -> dict | None:
        """The search's result: the best ``final_k`` losses of the archive that train distinctly
        (a gradient different from L_I's and from each other's, see
        :class:`jaxloss.filters.equivalence.TrainingClasses`: the archive keeps spellings
        apart, and so it does losses that differ by a term without the prediction in it; the
        same training measured twice tells nothing new) and L_I, measured again by
        the fitness stage with :meth:`final_seeds`, each loss with every seed (paired).

        Returns:
          ``{"stage", "unit", "seeds", "losses": [...]}`` with L_I first; per loss its formula,
          in-search fitness, per-seed values, mean ± std and (for the found losses) the paired
          difference to L_I with its 95% Student-t interval; None when ``final_k`` is 0.
        """
        if not self.s.final_k:
            return None
        initial = record.initial
        archive = archives.from_json(record.archive)
        everything = from_losses([as_loss(f, self.s.branch, max_nodes=self.s.capacity) for f in
                                  [initial["formula"]] + [e.formula for e in archive]],
                                 self.s.capacity)
        trains = equivalence.TrainingClasses(self.s.branch).assign(everything)
        chosen = []
        for k, entry in enumerate(archive):
            if len(chosen) < self.s.final_k and trains[k + 1] not in \
                    {trains[0], *(trains[j + 1] for j in chosen)}:
                chosen.append(k)
        found = [archive[k] for k in chosen]
        formulas = [initial["formula"]] + [e.formula for e in found]
        in_search = [initial["fitness"]] + [e.score for e in found]
        pop = everything[np.array([0] + [k + 1 for k in chosen])]
        seeds = self.final_seeds()
        stage = next(st for st in self.stages if st.name == self.fitness_stage)
        self.log(f"final: L_I and the best {len(found)} loss(es) measured again by the "
                 f"{stage.name} stage with fresh seeds {seeds}")
        values = stage.remeasure(pop, seeds)
        losses = []
        for k, formula in enumerate(formulas):
            row = {"formula": formula, "initial": k == 0, "in_search": in_search[k],
                   "values": [None if np.isnan(v) else float(v) for v in values[k]],
                   **spread(values[k].tolist())}
            if k:
                row["vs_initial"] = paired_interval(values[k].tolist(), values[0].tolist())
            losses.append(row)
            self.log(f"  {_final_line(row, self.unit)}  {'L_I ' if k == 0 else ''}{formula}")
        return {"stage": stage.name, "unit": self.unit, "seeds": seeds, "losses": losses}

    def tune(self, archive: list) -> list[dict]:
        """CMA-ES on the constants of the best ``tune_constants`` losses (see jaxloss.tune)."""
        from jaxloss.evolution.tune import tune_constants

        out = []
        for entry in archive[: self.s.tune_constants]:
            loss = as_loss(entry.formula, self.s.branch)
            self.log(f"tuning the constants of {entry.formula}")
            try:
                tuned = tune_constants(loss, generations=self.s.tune_generations,
                                       seed=self.s.seed)
            except ValueError as err:  # a constant loss: nothing to tune
                self.log(f"  skipped: {err}")
                continue
            if not tuned.slots:
                self.log("  skipped: it has no numeric constant")
                continue
            self.log(f"  simulation score {tuned.start_score:.4f} -> {tuned.score:.4f}: "
                     f"{tuned.text}")
            out.append(tuned.as_dict())
        return out

    # -- the loop ---------------------------------------------------------------------------
    def prepare_folder(self, resume: bool, restart: bool):
        """(generations done, state, key, run record) to start from, after checking the run folder.

        A new run refuses a folder that holds a run (``restart`` moves that run's log, checkpoints
        and report aside into ``previous-<time>/`` and starts over; the detector results are kept:
        they depend on nothing the run's seed decides). ``resume`` continues from the newest
        checkpoint that restores; if there are checkpoints and none restores, or a log but no
        checkpoint, it stops with :class:`RunFolderError` and touches nothing.
        """
        log_path = self.dir / "candidates.jsonl"
        has_log = log_path.exists() and log_path.stat().st_size > 0
        has_steps = checkpoint.has_steps(self.dir)
        start = self.initial_state()
        if not resume:
            if has_log or has_steps:
                if not restart:
                    raise RunFolderError(
                        f"{self.dir} holds a search already: continue it with --resume "
                        f"{self.dir}, start it over with --restart (its log and checkpoints are "
                        "kept in a previous-<time> folder), or choose another --out")
                aside = _move_run_aside(self.dir)
                self.log(f"--restart: the previous run's files are in {aside}")
            return start
        try:
            found = checkpoint.restore_latest(self.dir, log=self.log)
        except checkpoint.NoUsableCheckpoint as err:
            raise RunFolderError(
                f"--resume {self.dir}: {err}. Nothing was changed: candidates.jsonl and the "
                "detector results are as they were. Start over with --restart (keeps them in a "
                "previous-<time> folder) or another --out") from None
        if found is None:
            if has_log:
                raise RunFolderError(
                    f"--resume {self.dir}: candidates.jsonl holds results but there is no "
                    f"checkpoint in {self.dir / 'checkpoints'} to continue from. Nothing was "
                    "changed; start over with --restart (keeps the log in a previous-<time> "
                    "folder) or another --out")
            self.log(f"no checkpoint in {self.dir / 'checkpoints'} yet: starting from "
                     "generation 0")
            return start
        start_gen, arrays, document = found
        state, key, record = self._restore(arrays, document)
        self.log(f"resuming {self.dir} after generation {start_gen} of {self.s.generations}")
        return start_gen, state, key, record

    def run(self, resume: bool = False, restart: bool = False) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        start_gen, state, key, record = self.prepare_folder(resume, restart)
        _truncate_log(self.dir / "candidates.jsonl", start_gen)
        (self.dir / "settings.json").write_text(json.dumps(self.s.to_json(), indent=2))
        record.stages = [st.describe() for st in self.stages]
        if not self.s.detector:
            record.stages.append("detector stages off (--no-detector)")
        self.log(f"search: branch {self.s.branch}, strategy {self.s.strategy}, population "
                 f"{self.s.population:,}, {self.s.generations} generations, {self.s.parents} "
                 f"parents, seed {self.s.seed}; run folder {self.dir}")
        self.log(f"funnel: {' -> '.join(record.stages)}")
        self.log(f"engine: {jax.default_backend()}, {shard_count()} device(s) "
                 f"(--cpu-devices on CPU); compile cache: {current_folder() or 'off'}")
        started = time.perf_counter()
        with _stop_on_sigterm():
            if record.initial is None:
                state, record.initial, first = self.measure_initial()
                _append_log(self.dir / "candidates.jsonl", [first])
                self._checkpoint(0, state, key, record)
            initial = record.initial
            for generation in range(start_gen, self.s.generations):
                t0 = time.perf_counter()
                key, k_gen, k_tell = jax.random.split(key, 3)
                self.log(f"generation {generation + 1}/{self.s.generations}")
                if self.s.strategy != "random" and num_filled(state) == 0:
                    raise RuntimeError("no parent has a measured fitness, so no tournament can "
                                       "draw one (this is a bug: L_I is always a parent)")
                solutions, state = self.propose(generation, k_gen, state)
                pop = solutions.numpy()
                every = pop.losses()
                self.log(f"  offspring: {len({l.key for l in every}):,} distinct of {len(pop):,}; "
                         f"{_share(sum(l.key == initial['key'] for l in every), len(pop))} "
                         "copies of L_I")
                final, funnel_row, records = self.evaluate(generation + 1, pop)
                fitness = jnp.asarray(np.where(np.isnan(final), np.inf, -final))
                state, _ = self.strategy.tell(k_tell, solutions, fitness, state, self.params)
                for rec, loss in zip(records, every):
                    rec["formula"], rec["key"] = str(loss), loss.key
                # the archive holds what the search found: L_I is reported on its own
                reached = [int(k) for k in np.flatnonzero(~np.isnan(final))
                           if every[int(k)].key != initial["key"]]
                entries = [archives.Entry(str(every[k]), every[k].key, float(final[k]),
                                          generation + 1) for k in reached]
                archive = archives.update(archives.from_json(record.archive), entries,
                                          self.s.archive_size)
                record.archive = archives.to_json(archive)
                record.funnel.append(funnel_row)
                best = archive[0].score if archive else None
                record.best_by_generation.append([generation + 1, best])
                parents = -np.asarray(state.fitness)[np.isfinite(np.asarray(state.fitness))]
                record.parents_by_generation.append(
                    [generation + 1, int(parents.size), float(parents.min()),
                     float(parents.max())])
                _append_log(self.dir / "candidates.jsonl", records)
                self._checkpoint(generation + 1, state, key, record)
                self.log(f"  parents: {parents.size} of {self.s.parents} slots, {self.unit} "
                         f"{parents.min():.4f} to {parents.max():.4f}")
                if archive:
                    self.log(f"  best so far: {best:.4f} {self.unit} "
                             f"({_versus(best, initial)})  {archive[0].formula}")
                else:
                    self.log("  best so far: none yet")
                self.log(f"  ({time.perf_counter() - t0:.1f} s)")
            record.final = self.measure_final(record)
        if self.s.tune_constants:
            record.tuned = self.tune(archives.from_json(record.archive))
        record.seconds = time.perf_counter() - started
        record.distinct_simulated = sum(len(st.cache) for st in self.stages
                                        if isinstance(st, SimulationStage))
        scatter = _scatter(self.dir / "candidates.jsonl")
        result = report.write(self.dir, record.to_json(), scatter)
        self.log(f"report: {self.dir / 'report.md'}, {self.dir / 'report.json'}, "
                 f"{self.dir / 'fitness.png'}")
        return result


def _final_line(row: dict, unit: str) -> str:
    """One loss's fresh-seed measurement: mean ± std (n), and vs L_I with its interval."""
    if row["mean"] is None:
        return "no measurement came out"
    std = f" ± {row['std']:.4f}" if row["std"] is not None else ""
    text = f"{row['mean']:.4f}{std} {unit} (n = {row['n']})"
    diff = row.get("vs_initial")
    if diff and diff["mean"] is not None:
        ci = (f" [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}]" if diff["ci"] else "")
        text += f", vs L_I {diff['mean']:+.4f}{ci}"
    return text


def _share(count: int, total: int) -> str:
    return f"{count:,} ({100.0 * count / max(total, 1):.1f}%)"


def _versus(score: float, initial: dict) -> str:
    """'best vs initial: +0.0120 mAP' for a score of the same unit as L_I's fitness."""
    return f"vs initial: {score - initial['fitness']:+.4f} {initial['unit']}"


@contextmanager
def _stop_on_sigterm():
    """SIGTERM (a scheduler's or ``kill``'s stop) raises :class:`Interrupted` in the search, as
    Ctrl-C raises KeyboardInterrupt: the trainings in flight are ended and recorded nowhere, the
    last checkpoint stands, and ``--resume`` continues from it. Only in the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _move_run_aside(run_dir: Path) -> Path:
    """Move a run's log, checkpoints and report into ``run_dir/previous-<time>/``."""
    aside = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir(parents=True, exist_ok=False)
    for name in ("candidates.jsonl", "checkpoints", "checkpoints-unusable", "report.json",
                 "report.md", "fitness.png", "settings.json"):
        if (run_dir / name).exists():
            shutil.move(str(run_dir / name), str(aside / name))
    return aside


def _reason_text(reasons: list) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        if r:
            counts[r] = counts.get(r, 0) + 1
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none rejected"


def _append_log(path: Path, records: list) -> None:
    with path.open("a") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


def _truncate_log(path: Path, generations_done: int) -> None:
    """Keep the log lines of completed generations only (a killed run may have left more)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["generation"] <= generations_done]
    path.write_text("".join(line + "\n" for line in kept))


def _scatter(path: Path) -> list[tuple[int, dict]]:
    """(generation, {stage: score}) of every logged candidate that has a score."""
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("scores"):
                out.append((rec["generation"], rec["scores"]))
    return out


def run_search(settings: Settings, resume: bool = False, log=_say, restart: bool = False
               ) -> dict:
    """Run (or resume) a search; returns the report dictionary (also in RUN_DIR/report.json).

    Raises:
      RunFolderError: a new run in a folder that holds one (without ``restart``), or a resume
        with nothing usable to continue from.
      Interrupted: SIGTERM (KeyboardInterrupt for Ctrl-C); the last checkpoint stands.
    """
    return Search(settings, log=log).run(resume=resume, restart=restart)


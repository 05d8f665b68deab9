"""The search loop (paper §3.2.1, Algorithm 1): evolve, filter, rank, checkpoint, report.

One generation: the strategy proposes ``population`` candidates (``ask``); the funnel judges them
stage by stage (:mod:`jaxloss.search.stages`); the fitness (minus the score of the last scoring
stage) goes back to the strategy (``tell``), which keeps the best ``parents``; the archive, the
per-candidate log (``candidates.jsonl``) and a checkpoint are written. Every random choice flows
from ``--seed``; a resumed run continues from the last checkpoint and ends exactly as an
uninterrupted one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import sample
from jaxloss.compile_cache import current_folder
from jaxloss.devices import shard_count
from jaxloss.genome import Population, from_graphs, pad_capacity
from jaxloss.parse import parse_graph
from jaxloss.search import archive as archives
from jaxloss.search import checkpoint, report
from jaxloss.search.settings import Settings
from jaxloss.search.stages import (PropertyStage, SimulationStage, Stage, StageOutcome,
                                   TopKStage, load_detector_stages)
from jaxloss.strategy import LossEvolution, as_population, as_solutions


def _say(*args, **kwargs):
    kwargs.setdefault("flush", True)
    print(*args, **kwargs)


class Search:
    """A search run: settings, run folder, strategy, stages and state."""

    def __init__(self, settings: Settings, log=_say):
        self.s = settings
        self.dir = settings.run_dir
        self.log = log
        self.strategy = LossEvolution(
            population_size=settings.population, branch=settings.branch,
            capacity=settings.capacity, num_parents=settings.parents,
            p_crossover=settings.p_crossover, p_mutation=settings.p_mutation,
            tournament_size=settings.tournament_size)
        self.params = self.strategy.default_params
        self.sim_cache: dict[bytes, tuple[float, bool]] = {}
        self.stages: list[Stage] = [PropertyStage(property_checks=settings.property_checks
                                                  and settings.strategy != "vanilla")]
        if settings.simulation:
            self.stages.append(SimulationStage(self.sim_cache))
        if settings.detector:
            self.stages.append(TopKStage(settings.top_k))
            self.stages += load_detector_stages(settings.to_json(), self.dir, log)

    # -- state ------------------------------------------------------------------------------
    def initial_state(self):
        graph = parse_graph(self.s.initial_formula, self.s.branch, self.s.capacity)
        parents = from_graphs([graph] * self.s.parents, self.s.branch, self.s.capacity)
        key = jax.random.key(self.s.seed)
        key, k_init = jax.random.split(key)
        state = self.strategy.init(k_init, as_solutions(parents), jnp.zeros(self.s.parents),
                                   self.params)
        document = {"settings": self.s.to_json(), "funnel": [], "archive": [],
                    "best_by_generation": []}
        return 0, state, key, document

    def _stage_states(self) -> dict:
        return {st.name: st.state() for st in self.stages if st.state()}

    def _arrays(self, state, key) -> dict:
        keys = sorted(self.sim_cache)
        rows = max(1, len(keys))  # orbax cannot store empty arrays: pad, and store the count
        pad = lambda a: np.concatenate([a, np.zeros((rows - len(keys),) + a.shape[1:], a.dtype)])  # noqa: E731
        return {
            "population": np.asarray(state.population), "fitness": np.asarray(state.fitness),
            "best_solution": np.asarray(state.best_solution),
            "best_fitness": np.asarray(state.best_fitness),
            "generation_counter": np.asarray(state.generation_counter),
            "key": np.asarray(jax.random.key_data(key)),
            "cache_size": np.int32(len(keys)),
            "cache_keys": pad(np.array([np.frombuffer(k, np.uint8) for k in keys],
                                       np.uint8).reshape(-1, 16)),
            "cache_scores": pad(np.array([self.sim_cache[k][0] for k in keys], np.float32)),
            "cache_learned": pad(np.array([self.sim_cache[k][1] for k in keys], bool)),
        }

    def _from_arrays(self, arrays: dict):
        state = self.strategy.init(jax.random.key(0), as_solutions(
            from_graphs([parse_graph(self.s.initial_formula, self.s.branch, None)] * self.s.parents,
                        self.s.branch, self.s.capacity)), jnp.zeros(self.s.parents), self.params)
        state = state.replace(
            population=jnp.asarray(arrays["population"]), fitness=jnp.asarray(arrays["fitness"]),
            best_solution=jnp.asarray(arrays["best_solution"]),
            best_fitness=jnp.asarray(arrays["best_fitness"]),
            generation_counter=jnp.asarray(arrays["generation_counter"]))
        key = jax.random.wrap_key_data(jnp.asarray(arrays["key"], jnp.uint32))
        self.sim_cache.clear()
        n = int(arrays["cache_size"])
        for k, score, ok in zip(np.asarray(arrays["cache_keys"]).reshape(-1, 16)[:n],
                                np.asarray(arrays["cache_scores"]).reshape(-1)[:n],
                                np.asarray(arrays["cache_learned"]).reshape(-1)[:n]):
            self.sim_cache[k.tobytes()] = (float(score), bool(ok))
        return state, key

    # -- one generation ---------------------------------------------------------------------
    def propose(self, generation: int, key, state):
        """The generation's candidates: offspring of the parents, or random genomes."""
        k_ask, k_random = jax.random.split(key)
        if self.s.strategy == "random":
            seed = int(jax.random.randint(k_random, (), 0, 2**31 - 1))
            pop = sample(self.s.branch, self.s.population, seed=seed,
                         max_nodes=min(16, self.s.capacity))
            pop = pad_capacity(pop, self.s.capacity)
            return as_solutions(pop), state
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
                    "fitness": None if np.isnan(final[k]) else float(final[k])}
                   for k in range(n)]
        for stage in self.stages:
            stage.end_generation(pop, final, context)
        return final, {"generation": generation, "stages": rows}, records

    def tune(self, archive: list) -> list[dict]:
        """CMA-ES on the constants of the best ``tune_constants`` losses (see jaxloss.tune)."""
        from jaxloss.loss import Loss
        from jaxloss.tune import tune_constants

        out = []
        for entry in archive[: self.s.tune_constants]:
            loss = Loss.parse(entry.formula, self.s.branch, max_nodes=None)
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
    def run(self, resume: bool = False) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        start_gen, state, key, document = self.initial_state()
        if resume:
            found = checkpoint.restore_latest(self.dir, log=self.log)
            if found is None:
                self.log(f"no usable checkpoint in {self.dir / 'checkpoints'}: starting from "
                         "generation 0")
            else:
                start_gen, arrays, document = found
                state, key = self._from_arrays(arrays)
                for st in self.stages:
                    st.load_state(document.get("stage_states", {}).get(st.name, {}))
                self.log(f"resuming {self.dir} after generation {start_gen} of "
                         f"{self.s.generations}")
        _truncate_log(self.dir / "candidates.jsonl", start_gen)
        (self.dir / "settings.json").write_text(json.dumps(self.s.to_json(), indent=2))
        document["stages"] = [st.describe() for st in self.stages]
        if not self.s.detector:
            document["stages"].append("detector stages off (--no-detector)")
        self.log(f"search: branch {self.s.branch}, strategy {self.s.strategy}, population "
                 f"{self.s.population:,}, {self.s.generations} generations, {self.s.parents} "
                 f"parents, seed {self.s.seed}; run folder {self.dir}")
        self.log(f"funnel: {' -> '.join(document['stages'])}")
        self.log(f"engine: {jax.default_backend()}, {shard_count()} device(s) "
                 f"(--cpu-devices on CPU); compile cache: {current_folder() or 'off'}")
        started = time.perf_counter()
        for generation in range(start_gen, self.s.generations):
            t0 = time.perf_counter()
            key, k_gen, k_tell = jax.random.split(key, 3)
            self.log(f"generation {generation + 1}/{self.s.generations}")
            solutions, state = self.propose(generation, k_gen, state)
            pop = as_population(solutions, self.s.branch)
            final, funnel_row, records = self.evaluate(generation + 1, pop)
            fitness = jnp.asarray(np.where(np.isnan(final), np.inf, -final))
            state, _ = self.strategy.tell(k_tell, solutions, fitness, state, self.params)
            reached = np.flatnonzero(~np.isnan(final))
            every = pop.losses()
            for rec, loss in zip(records, every):
                rec["formula"], rec["key"] = str(loss), loss.key
            losses = {int(k): every[int(k)] for k in reached}
            entries = [archives.Entry(str(losses[k]), losses[k].key, float(final[k]),
                                      generation + 1) for k in losses]
            archive = archives.update(archives.from_json(document["archive"]), entries,
                                      self.s.archive_size)
            document["archive"] = archives.to_json(archive)
            document["funnel"].append(funnel_row)
            best = archive[0].score if archive else None
            document["best_by_generation"].append([generation + 1, best])
            _append_log(self.dir / "candidates.jsonl", records)
            document["stage_states"] = self._stage_states()
            checkpoint.save(self.dir, generation + 1, self._arrays(state, key), document)
            best_text = f"{best:.4f}  {archive[0].formula}" if archive else "none yet"
            self.log(f"  best so far: {best_text}   ({time.perf_counter() - t0:.1f} s)")
        if self.s.tune_constants:
            document["tuned"] = self.tune(archives.from_json(document["archive"]))
        document["seconds"] = time.perf_counter() - started
        document["distinct_simulated"] = len(self.sim_cache)
        scatter = _scatter(self.dir / "candidates.jsonl")
        result = report.write(self.dir, document, scatter)
        self.log(f"report: {self.dir / 'report.md'}, {self.dir / 'report.json'}, "
                 f"{self.dir / 'fitness.png'}")
        return result


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


def _scatter(path: Path) -> list[tuple[int, float]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("score") is not None:
                out.append((rec["generation"], rec["score"]))
    return out


def run_search(settings: Settings, resume: bool = False, log=_say) -> dict:
    """Run (or resume) a search; returns the report dictionary (also in RUN_DIR/report.json)."""
    return Search(settings, log=log).run(resume=resume)


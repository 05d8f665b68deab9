"""The funnel of a search generation: stages behind one evaluator interface.

A stage receives the candidates that survived the stages before it and returns, for each, whether
it passes, an optional score (higher is better) and the reason for a rejection. Each stage can be
switched off for ablations. The fitness of a candidate is the score of the last scoring stage it
passed through; the search ranks only candidates that reached the last enabled scoring stage.

JAX stages (this module): ``validity`` and ``property`` (one ``jaxloss.check`` call), and
``simulation`` (``jaxloss.simulate`` on one representative per equivalence class, cached across
generations by fingerprint). The detector stages (D_verify simulation, proxy training) plug in with
the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxloss.filters import equivalence, minisim
from jaxloss.filters.checks import check
from jaxloss.filters.funnel import funnel_row
from jaxloss.genome.population import Population


@dataclass
class StageOutcome:
    """What a stage says about the candidates it received (arrays aligned with ``indices``)."""

    indices: np.ndarray
    passed: np.ndarray
    score: np.ndarray | None = None
    reasons: list = field(default_factory=list)
    details: list | None = None  # per candidate: None or a JSON-able dict for its log record


class Stage:
    """Base of the funnel's stages.

    Attributes:
      name: shown in logs, the funnel and the per-candidate log.
      scores: the stage gives a score (higher is better); the last scoring stage a candidate
        passes gives its fitness.
    """

    name = "stage"
    scores = False

    def run(self, pop: Population, indices: np.ndarray, context: dict) -> StageOutcome:
        """Judge ``pop[indices]``; ``context`` carries ``generation`` (1-based; 0 when the
        initial loss L_I is measured, by the scoring stages only) and ``score`` (float
        [len(pop)], the latest score of every candidate, NaN where none)."""
        raise NotImplementedError

    def rows(self, outcome: StageOutcome) -> list[dict]:
        """Funnel rows: candidates in, out, and rejected per reason."""
        return [funnel_row(self.name, len(outcome.indices), int(np.sum(outcome.passed)),
                           [r for r, ok in zip(outcome.reasons, outcome.passed) if not ok])]

    def end_generation(self, pop: Population, fitness: np.ndarray, context: dict) -> None:
        """Called once the generation's fitness is known (float [len(pop)], NaN where the
        candidate did not pass every stage), e.g. to set the next generation's threshold."""

    def remeasure(self, pop: Population, seeds: list[int]) -> np.ndarray:
        """The scores of ``pop`` measured again with each of ``seeds`` (seeds this stage never
        used in the search): float [len(pop), len(seeds)], NaN where no score came out. A scoring
        stage that can be the fitness implements it (the search's final fresh-seed result)."""
        raise NotImplementedError(f"the {self.name} stage cannot re-measure losses")

    def seeds_used(self) -> list[int]:
        """The training seeds this stage used in the search (the final measurement takes seeds
        after all of them); none by default."""
        return []

    def state(self) -> dict:
        """JSON-able state to checkpoint (caches, thresholds); empty by default."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned."""

    def arrays(self) -> dict[str, np.ndarray]:
        """Array state to checkpoint (e.g. a large cache; orbax stores arrays, not JSON); empty
        by default. Arrays must not be empty (orbax cannot store them): pad and store a count."""
        return {}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`arrays` returned."""

    def describe(self) -> str:
        """One line for the run header and the report."""
        return self.name


class PropertyStage(Stage):
    """Validity (NaN/inf) and, unless ``property_checks`` is False, the convergence properties.

    Runs both in one ``jaxloss.check`` call; reports them as two stages (``validity`` then
    ``property``) via :meth:`split`.
    """

    name = "checks"

    def __init__(self, property_checks: bool = True):
        self.property_checks = property_checks

    def run(self, pop, indices, context):
        verdicts = check(pop[indices])
        reasons = verdicts.reasons
        valid = np.array([r != "invalid" for r in reasons], bool)
        passed = verdicts.passed if self.property_checks else valid
        return StageOutcome(indices, passed, None, [None if p else r for p, r in
                                                    zip(passed, reasons)])

    def rows(self, outcome):
        n = len(outcome.indices)
        invalid = [r for r in outcome.reasons if r == "invalid"]
        rows = [funnel_row("validity", n, n - len(invalid), invalid)]
        if self.property_checks:
            others = [r for r in outcome.reasons if r not in (None, "invalid")]
            rows.append(funnel_row("property", n - len(invalid), int(np.sum(outcome.passed)),
                                   others))
        return rows

    def describe(self):
        return "validity, convergence properties" if self.property_checks else "validity"


class SimulationStage(Stage):
    """The mini optimization simulation; score = the task's AP or mean IoU."""

    name = "simulation"
    scores = True

    def __init__(self):
        self.cache: dict[bytes, tuple[float, bool]] = {}  # fingerprint -> (score, learned)

    def describe(self):
        return "mini optimization simulation"

    def run(self, pop, indices, context):
        sub = pop[indices]
        if len(sub) == 0:
            return StageOutcome(indices, np.zeros(0, bool), np.zeros(0, np.float32), [])
        score, passed, prints = minisim.simulate_by_class(sub, self.cache)
        context.setdefault("fingerprints", {}).update(dict(zip(indices.tolist(), prints)))
        return StageOutcome(indices, passed, score,
                            [None if p else "not_learning" for p in passed])

    def arrays(self):
        """The cache: fingerprints uint8 [n, 16], scores float32 [n], learned bool [n] (padded to
        at least one row) and their count."""
        keys = sorted(self.cache)
        rows = max(1, len(keys))
        pad = lambda a: np.concatenate([a, np.zeros((rows - len(keys),) + a.shape[1:], a.dtype)])  # noqa: E731
        return {
            "cache_size": np.int32(len(keys)),
            "cache_keys": pad(np.array([np.frombuffer(k, np.uint8) for k in keys],
                                       np.uint8).reshape(-1, 16)),
            "cache_scores": pad(np.array([self.cache[k][0] for k in keys], np.float32)),
            "cache_learned": pad(np.array([self.cache[k][1] for k in keys], bool)),
        }

    def load_arrays(self, arrays):
        self.cache.clear()
        n = int(arrays["cache_size"])
        for k, score, ok in zip(np.asarray(arrays["cache_keys"]).reshape(-1, 16)[:n],
                                np.asarray(arrays["cache_scores"]).reshape(-1)[:n],
                                np.asarray(arrays["cache_learned"]).reshape(-1)[:n]):
            self.cache[k.tobytes()] = (float(score), bool(ok))

    def remeasure(self, pop, seeds):
        """Scores on other draws of the simulation's task (the search trains on draw 0)."""
        return np.stack([minisim.simulate(pop, task_seed=int(seed)).score for seed in seeds],
                        axis=1).astype(np.float32)


def training_identities(pop, indices, context: dict) -> list[int]:
    """What identifies the training each of ``indices`` gives a detector: its class in
    :class:`jaxloss.filters.equivalence.TrainingClasses` (the same gradient, so the same training,
    whatever the spelling or a term without the prediction in it). Assigned once per candidate
    and generation, kept in ``context``."""
    known = context.setdefault("training_class", {})
    todo = sorted({int(i) for i in indices} - set(known))
    if todo:
        classes = context.setdefault("training_classes",
                                     equivalence.TrainingClasses(pop.branch))
        known.update(zip(todo, classes.assign(pop[np.array(todo)]).tolist()))
    return [known[int(i)] for i in indices]


class TopKStage(Stage):
    """Keeps the ``k`` best *distinct* candidates by their latest score for the expensive stages
    after it (detector trainings): candidates that train identically (the same gradient:
    :func:`training_identities`) count once, and every copy of a chosen one goes on (they share
    its trainings). Ties are broken by index, so the choice is deterministic.

    A search has two: ``verify_k`` (by simulation score, before D_verify) and ``top_k`` (by
    D_verify AP, before the proxy task); a rejected candidate's reason is ``not_<name>``."""

    name = "top_k"

    def __init__(self, k: int, name: str = "top_k"):
        self.k = k
        self.name = name

    def run(self, pop, indices, context):
        latest = context["score"][indices]
        identity = training_identities(pop, indices, context)
        order = np.lexsort((indices, -np.nan_to_num(latest, nan=-np.inf)))
        chosen: list = []
        for j in order:
            if identity[j] not in chosen:
                chosen.append(identity[j])
            if len(chosen) == self.k:
                break
        passed = np.array([ident in chosen for ident in identity], bool)
        return StageOutcome(indices, passed, None,
                            [None if p else f"not_{self.name}" for p in passed])

    def describe(self):
        return f"{self.name}: best {self.k} distinct"


def load_detector_stages(settings: dict, run_dir, log) -> list[Stage]:
    """The detector stages from the plugin that provides them (the ``bridge`` package registers
    ``detector`` in the ``jaxloss.stages`` entry-point group); jaxloss itself never imports torch.

    Raises:
      RuntimeError: saying how to get them, when no plugin is installed or it fails to load.
    """
    from jaxloss.search.settings import DETECTOR_PLUGIN, DETECTOR_PLUGIN_ERROR

    if DETECTOR_PLUGIN_ERROR is not None:
        raise RuntimeError(f"the detector stages failed to load ({DETECTOR_PLUGIN_ERROR}); "
                           "check the PyTorch/MMDetection install or run with --no-detector")
    if DETECTOR_PLUGIN is None:
        raise RuntimeError("the detector stages are not installed: install the bridge package "
                           "(scripts/setup.sh does) or run with --no-detector")
    factory = DETECTOR_PLUGIN
    return list(factory(settings=settings, run_dir=run_dir, log=log))

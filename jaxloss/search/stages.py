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

from jaxloss import equivalence, minisim
from jaxloss.checks import check
from jaxloss.genome import Population


@dataclass
class StageOutcome:
    """What a stage says about the candidates it received (arrays aligned with ``indices``)."""

    indices: np.ndarray
    passed: np.ndarray
    score: np.ndarray | None = None
    reasons: list = field(default_factory=list)


class Stage:
    """Base of the funnel's stages."""

    name = "stage"
    scores = False

    def run(self, pop: Population, indices: np.ndarray, context: dict) -> StageOutcome:
        raise NotImplementedError


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
        valid = np.array([r != "invalid" for r in reasons])
        passed = verdicts.passed if self.property_checks else valid
        return StageOutcome(indices, passed, None, [None if p else r for p, r in
                                                    zip(passed, reasons)])


class SimulationStage(Stage):
    """The mini optimization simulation; score = the task's AP or mean IoU."""

    name = "simulation"
    scores = True

    def __init__(self, cache: dict | None = None):
        self.cache = {} if cache is None else cache  # fingerprint -> (score, learned)

    def run(self, pop, indices, context):
        sub = pop[indices]
        if len(sub) == 0:
            return StageOutcome(indices, np.zeros(0, bool), np.zeros(0, np.float32), [])
        prints = equivalence.fingerprints(sub)
        todo = sorted({fp for fp in prints if fp not in self.cache})
        if todo:
            first = {fp: k for k, fp in reversed(list(enumerate(prints)))}
            rows = np.array([first[fp] for fp in todo])
            result = minisim.simulate(sub[rows])
            for fp, s, ok in zip(todo, result.score, result.learned):
                self.cache[fp] = (float(s), bool(ok))
        score = np.array([self.cache[fp][0] for fp in prints], np.float32)
        passed = np.array([self.cache[fp][1] for fp in prints])
        context.setdefault("fingerprints", {}).update(dict(zip(indices.tolist(), prints)))
        return StageOutcome(indices, passed, score,
                            [None if p else "not_learning" for p in passed])

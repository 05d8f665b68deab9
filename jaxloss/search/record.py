"""The run record: what a search has established so far. It is saved with every checkpoint (as
JSON inside the orbax step) and becomes the report at the end (:func:`jaxloss.search.report.write`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class RunRecord:
    """Attributes:
      settings: the run's settings (``Settings.to_json()``).
      stages: one line per funnel stage (``Stage.describe()``), in order.
      initial: L_I's measurement (formula, key, fitness, unit, per-stage scores); None until
        generation 0 is done.
      funnel: per generation ``{"generation", "stages": [funnel rows]}``.
      archive: the best distinct losses found (``archive.to_json``), best first.
      best_by_generation: ``[generation, best fitness or None]`` per generation.
      parents_by_generation: ``[generation, filled slots, min, max parent fitness]``.
      stage_states: per stage, the JSON state it checkpoints (``Stage.state()``).
      final: the fresh-seed re-measurement of the best losses and L_I (None: not yet / off).
      tuned: constant-tuning results (``TunedLoss.as_dict()``).
      seconds: wall time of the run (s); distinct_simulated: functions the simulation trained.
    """

    settings: dict
    stages: list = field(default_factory=list)
    initial: dict | None = None
    funnel: list = field(default_factory=list)
    archive: list = field(default_factory=list)
    best_by_generation: list = field(default_factory=list)
    parents_by_generation: list = field(default_factory=list)
    stage_states: dict = field(default_factory=dict)
    final: dict | None = None
    tuned: list = field(default_factory=list)
    seconds: float | None = None
    distinct_simulated: int | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunRecord":
        """The record of a checkpoint; a key this version does not know is an error (the
        checkpoint comes from another version of jaxloss)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"the checkpoint's run record has unknown fields {unknown}: it was "
                             "written by another version of jaxloss")
        return cls(**data)

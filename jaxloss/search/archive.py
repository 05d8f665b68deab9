"""The elite archive (hall of fame): the best distinct losses seen across all generations."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Entry:
    """One archived loss: its formula text (parseable), structural key, score and first
    generation."""

    formula: str
    key: str
    score: float
    generation: int


def update(archive: list[Entry], candidates: list[Entry], size: int) -> list[Entry]:
    """The ``size`` best distinct entries of the archive and the new candidates.

    Ordered by score (higher first), then by the generation that found it, then by key, so the
    order never depends on evaluation order. A loss already archived keeps its first entry.
    """
    by_key = {e.key: e for e in archive}
    for c in candidates:
        if c.key not in by_key:
            by_key[c.key] = c
    ranked = sorted(by_key.values(), key=lambda e: (-e.score, e.generation, e.key))
    return ranked[:size]


def to_json(archive: list[Entry]) -> list[dict]:
    return [asdict(e) for e in archive]


def from_json(data: list[dict]) -> list[Entry]:
    return [Entry(**d) for d in data]

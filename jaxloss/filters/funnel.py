"""Funnel statistics: how many candidates enter and leave each filter stage, and why."""

from __future__ import annotations

from jaxloss.filters.checks import Verdicts

STAGES = (
    ("validity", ("invalid",)),
    ("property", ("not_monotonic", "inconsistent", "flat", "not_convergent")),
    ("simulation", ("not_learning",)),
)
"""The filter stages in order, with the reasons each rejects for."""


def funnel(verdicts: Verdicts, simulated: bool | None = None) -> list[dict]:
    """Per stage: candidates in, out, and rejected per reason.

    Args:
      verdicts: the result of ``jaxloss.check``.
      simulated: whether the simulation stage ran (default: whether any candidate has a
        ``sim_score`` measure).

    Returns:
      a list of ``{"stage", "in", "out", "rejected": {reason: count}}``, one per stage that ran.
    """
    if simulated is None:
        simulated = "sim_score" in verdicts.measures
    reasons = verdicts.reasons
    remaining = len(verdicts)
    rows = []
    for stage, stage_reasons in STAGES:
        if stage == "simulation" and not simulated:
            break
        rejected = [r for r in reasons if r in stage_reasons]
        rows.append(funnel_row(stage, remaining, remaining - len(rejected), rejected))
        remaining = rows[-1]["out"]
    return rows


def funnel_row(stage: str, n_in: int, n_out: int, rejected_reasons: list) -> dict:
    """A funnel row: candidates in and out of a stage and the count of each rejection reason
    (None counts as ``"rejected"``); the search's stages report their rows with it too."""
    counts: dict[str, int] = {}
    for r in rejected_reasons:
        key = r or "rejected"
        counts[key] = counts.get(key, 0) + 1
    return {"stage": stage, "in": n_in, "out": n_out, "rejected": dict(sorted(counts.items()))}


def format_funnel(rows: list[dict]) -> str:
    """The funnel as an aligned text table."""
    lines = [f"{'stage':12s} {'in':>10s} {'out':>10s} {'kept':>8s}  rejected"]
    for r in rows:
        kept = 100.0 * r["out"] / r["in"] if r["in"] else 0.0
        why = ", ".join(f"{k} {v:,}" for k, v in r["rejected"].items()) or "-"
        lines.append(f"{r['stage']:12s} {r['in']:>10,} {r['out']:>10,} {kept:>7.2f}%  {why}")
    return "\n".join(lines)

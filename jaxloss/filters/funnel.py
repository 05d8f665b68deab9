"""Funnel statistics: how many candidates enter and leave each filter stage, and why."""

from __future__ import annotations

from jaxloss.filters.checks import REASONS, Verdicts

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
    counts = {name: int((verdicts.reason_code == k + 1).sum()) for k, name in enumerate(REASONS)}
    remaining = len(verdicts)
    rows = []
    for stage, reasons in STAGES:
        if stage == "simulation" and not simulated:
            break
        rejected = {r: counts[r] for r in reasons if counts[r]}
        out = remaining - sum(rejected.values())
        rows.append({"stage": stage, "in": remaining, "out": out, "rejected": rejected})
        remaining = out
    return rows


def format_funnel(rows: list[dict]) -> str:
    """The funnel as an aligned text table."""
    lines = [f"{'stage':12s} {'in':>10s} {'out':>10s} {'kept':>8s}  rejected"]
    for r in rows:
        kept = 100.0 * r["out"] / r["in"] if r["in"] else 0.0
        why = ", ".join(f"{k} {v:,}" for k, v in r["rejected"].items()) or "-"
        lines.append(f"{r['stage']:12s} {r['in']:>10,} {r['out']:>10,} {kept:>7.2f}%  {why}")
    return "\n".join(lines)

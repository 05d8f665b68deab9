"""The search report: ``report.json`` for machines, ``report.md`` and ``fitness.png`` for people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxloss.filters.funnel import format_funnel
from jaxloss.space.resolve import as_loss

CONFIG_KEY = {"cls": "loss_cls", "cls_binary": "loss_cls", "reg": "loss_bbox"}
"""The key of each branch's loss in an MMDetection head's config."""


def searched_loss_config(formula: str, branch: str, loss_weight: float = 1.0, **options) -> dict:
    """The MMDetection config of a loss computed by the bridge's ``SearchedLoss`` (``formula``: a
    formula or a library name). The one builder of it: the report's config lines and the bridge's
    config editing (:func:`bridge.config.set_losses`) both use it; ``options`` are further
    arguments of ``SearchedLoss`` (``use_sigmoid``, ``constants``, ...)."""
    return dict(type="SearchedLoss", branch=branch, formula=formula,
                loss_weight=float(loss_weight), **options)


def mmdet_line(formula: str, branch: str, **options) -> str:
    """A ready-to-paste MMDetection config line using the bridge's ``SearchedLoss``, e.g.
    ``loss_cls=dict(type='SearchedLoss', branch='cls', formula='...', loss_weight=1.0)``."""
    config = searched_loss_config(formula, branch, **options)
    return f"{CONFIG_KEY[branch]}=dict({', '.join(f'{k}={v!r}' for k, v in config.items())})"


class _OutOfTime(BaseException):
    """Raised by the timer signal into sympy (a BaseException: sympy's ``except Exception``
    clauses must not swallow it)."""


SIMPLIFY_SECONDS = 5.0
"""Time sympy may spend simplifying one loss for the report: on some nested forms (e.g. a constant
subtree of S-curves and logarithms) ``sympy.simplify`` runs for minutes."""


def describe(formula: str, branch: str) -> dict:
    """Formula, simplified sympy, LaTeX and the MMDetection config line of a loss."""
    loss = as_loss(formula, branch)
    return {"formula": formula, "prefix": loss.prefix(), "sympy": _simplified(loss.sympy()),
            "latex": loss.latex(), "mmdet": mmdet_line(formula, branch), "nodes": loss.size}


def _simplified(expression, seconds: float = SIMPLIFY_SECONDS) -> str:
    """``sympy.simplify`` within ``seconds`` (a timer signal interrupts it; only possible in the
    main thread, elsewhere the expression is shown as it is); what could not be simplified in
    time is shown as it is, with a note."""
    import signal
    import threading

    import sympy as sp

    if threading.current_thread() is not threading.main_thread():
        return f"{expression}  (not simplified: report written outside the main thread)"

    def stop(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, stop)
    # every 0.5 s after the limit, again: sympy catches Exception in places, so the interrupt is
    # a BaseException, and one that lands in an except clause of sympy's is raised again
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        return str(sp.simplify(expression))
    except _OutOfTime:
        return f"{expression}  (sympy did not simplify it within {seconds:g} s)"
    except Exception:  # noqa: BLE001 - sympy may give up on exotic forms; say so
        return f"{expression}  (sympy could not simplify it)"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write(run_dir: Path, document: dict, scatter: list[tuple[int, dict]]) -> dict:
    """``scatter``: (generation, {stage: score}) of every measured candidate (L_I in 0)."""
    """Write report.json, report.md and fitness.png; returns the report dictionary."""
    settings = document["settings"]
    archive = document["archive"]
    best = archive[0] if archive else None
    initial = document.get("initial")
    report = {
        "best": best["formula"] if best else None,
        "fitness": best["score"] if best else None,
        "best_generation": best["generation"] if best else None,
        "best_vs_initial": (best["score"] - initial["fitness"]) if best and initial else None,
        "initial": initial,
        "final": document.get("final"),
        "parents_by_generation": document.get("parents_by_generation", []),
        "archive": archive,
        "funnel": document["funnel"],
        "totals": _totals(document["funnel"]),
        "settings": settings,
        "stages": document.get("stages"),
        "seconds": document.get("seconds"),
        "distinct_simulated": document.get("distinct_simulated"),
        "tuned": document.get("tuned", []),
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    _plot(run_dir / "fitness.png", document["best_by_generation"], scatter, settings, initial,
          document.get("final"))
    (run_dir / "report.md").write_text(_markdown(report, settings["branch"]))
    return report


RECHECK_SEEDS = 8
"""Seeds :func:`_verdict` suggests for re-measuring a winner (3 fresh seeds ranked the wrong loss
first in a measured run: docs/discovery.md)."""


def _verdict(final: dict, branch: str) -> str:
    """Whether a found loss beat L_I beyond the noise of the fresh-seed measurement, and how to
    check it with more seeds."""
    found = final["losses"][1:]
    beaten = [row for row in found
              if row.get("vs_initial", {}).get("ci") and row["vs_initial"]["ci"][0] > 0]
    start = max(final["seeds"]) + 1
    seeds = " ".join(str(start + j) for j in range(RECHECK_SEEDS))
    if final["stage"] == "proxy":
        flag = "--loss-reg" if branch == "reg" else "--loss-cls"
        losses = " ".join(f"'{row['formula']}'" for row in [final["losses"][0]] + (beaten or found))
        recheck = (f" Before calling a loss better, train it and L_I on {RECHECK_SEEDS} more fresh "
                   f"seeds: `python -m bridge.compare {flag} {losses} --seeds {seeds}` (add this "
                   "search's detector options, e.g. `--config`, `--data`, if it used others).")
    else:
        recheck = ""
    n = len(final["seeds"])
    if beaten:
        return (f"{len(beaten)} of {len(found)} re-measured losses beat L_I beyond the noise (the "
                "lower end of the 95% interval of the paired difference is above 0). Each "
                f"interval is one loss's, over {n} seeds, with no correction for testing "
                f"{len(found)} losses: with few seeds the order of the re-measured losses is "
                "itself noisy." + recheck)
    return ("No re-measured loss beat L_I beyond the noise (every 95% interval of the paired "
            "difference reaches 0 or below): with this many seeds the search has not shown a "
            "better loss than its start." + recheck)


def _totals(funnel: list[dict]) -> dict:
    """Candidates in and out of each stage, summed over generations."""
    totals: dict = {}
    for gen in funnel:
        for row in gen["stages"]:
            t = totals.setdefault(row["stage"], {"in": 0, "out": 0, "rejected": {}})
            t["in"] += row["in"]
            t["out"] += row["out"]
            for reason, n in row["rejected"].items():
                t["rejected"][reason] = t["rejected"].get(reason, 0) + n
    return totals


PANELS = {"simulation": "simulation score", "d_verify": "D_verify AP", "proxy": "proxy mAP"}


def _plot(path: Path, best_by_generation: list, scatter: list, settings: dict,
          initial: dict | None = None, final: dict | None = None) -> None:
    """One panel per scale that scored candidates (simulation score, D_verify AP, proxy mAP):
    every measured candidate by generation, L_I's value as a line; on the fitness panel (the
    last) the best so far and the final fresh-seed measurement (mean ± std) as error bars."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [name for name in PANELS if any(name in scores for _, scores in scatter)]
    stages = stages or ["simulation"]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages), 4.2), dpi=120,
                             squeeze=False)
    rng = np.random.default_rng(0)  # jitter only: the figure is the same every time
    for ax, name in zip(axes[0], stages):
        points = [(g, scores[name]) for g, scores in scatter if name in scores and g > 0]
        if points:
            g, v = np.array(points, dtype=float).T
            ax.scatter(g + rng.uniform(-0.2, 0.2, len(g)), v, s=6, alpha=0.35,
                       color="tab:blue", label="measured candidates")
        if initial and name in initial.get("scores", {}):
            ax.axhline(initial["scores"][name], color="black", ls="--", lw=1,
                       label=f"initial loss L_I ({initial['scores'][name]:.4f})")
        if name == stages[-1]:
            gens = [b[0] for b in best_by_generation if b[1] is not None]
            best = [b[1] for b in best_by_generation if b[1] is not None]
            if gens:
                ax.plot(gens, best, "-o", color="tab:red", ms=4, label="best so far")
            if final and final["stage"] == name:
                x0 = settings["generations"] + 1
                for k, row in enumerate(final["losses"]):
                    if row["mean"] is None:
                        continue
                    ax.errorbar(x0 + 0.15 * k, row["mean"], yerr=row["std"] or 0.0, fmt="s",
                                ms=4, capsize=3,
                                color="black" if row["initial"] else "tab:green",
                                label=("fresh seeds: L_I" if row["initial"] else
                                       "fresh seeds: best losses" if k == 1 else None))
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if final and name == stages[-1]:
            ticks = [t for t in ax.get_xticks() if 1 <= t <= settings["generations"]]
            ax.set_xticks(ticks + [settings["generations"] + 1],
                          [f"{t:g}" for t in ticks] + ["fresh\nseeds"])
        ax.set_ylabel(PANELS[name])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"{settings['branch']} search, strategy {settings['strategy']}, population "
                 f"{settings['population']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _markdown(report: dict, branch: str) -> str:
    lines = [f"# Loss search report ({branch})", ""]
    s = report["settings"]
    lines.append(f"Strategy `{s['strategy']}`, population {s['population']}, {s['generations']} "
                 f"generations, {s['parents']} parents, p_crossover {s['p_crossover']}, "
                 f"p_mutation {s['p_mutation']}, seed {s['seed']}; initial loss "
                 f"`{s['initial'] or 'library default'}`.")
    if report.get("stages"):
        lines.append("")
        lines.append(f"Funnel: {' → '.join(report['stages'])}.")
    initial = report.get("initial")
    if initial:
        measured = ", ".join(f"{name} {value:.4f}" for name, value in initial["scores"].items())
        lines += ["", "## Initial loss L_I (generation 0)", "",
                  f"`{initial['formula']}`, measured exactly as every candidate: {measured}. "
                  f"Its fitness, {initial['fitness']:.4f} {initial['unit']}, made it the first "
                  "parent."]
        if report.get("best_vs_initial") is not None:
            lines += ["", f"**Best vs initial: {report['best_vs_initial']:+.4f} "
                          f"{initial['unit']}** (one measurement each: the search picks the "
                          "best of many noisy measurements, so this difference is optimistic)."]
    final = report.get("final")
    if final:
        unit = final["unit"]
        lines += ["", "## Result: re-measured on fresh seeds", "",
                  f"The in-search fitness of a loss is one measurement, and the search keeps the "
                  f"best of many: it is optimistic. **This table, not the in-search maximum, is "
                  f"the search's result**: L_I and the best losses measured again by the "
                  f"`{final['stage']}` stage with seeds the search never used "
                  f"({', '.join(map(str, final['seeds']))}), every loss with every seed; the "
                  "difference to L_I is paired over seeds, with its 95% Student-t interval.", "",
                  f"| loss | in search | fresh seeds ({unit}, mean ± std) | vs L_I [95% CI] |",
                  "|---|---|---|---|"]
        for row in final["losses"]:
            name = "L_I" if row["initial"] else f"`{row['formula']}`"
            fresh = ("no result" if row["mean"] is None else f"{row['mean']:.4f}"
                     + (f" ± {row['std']:.4f}" if row["std"] is not None else ""))
            diff = row.get("vs_initial")
            versus = "—"
            if diff and diff["mean"] is not None:
                versus = f"{diff['mean']:+.4f}" + (
                    f" [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}]" if diff["ci"] else "")
            lines.append(f"| {name} | {row['in_search']:.4f} | {fresh} | {versus} |")
        lines += ["", _verdict(final, branch)]
    lines += ["", "![fitness over generations](fitness.png)", "", "## Best losses", ""]
    for rank, entry in enumerate(report["archive"][:5], start=1):
        d = describe(entry["formula"], branch)
        versus = (f", {entry['score'] - initial['fitness']:+.4f} vs initial" if initial
                  else "")
        lines += [f"### {rank}. fitness {entry['score']:.4f}{versus} (generation "
                  f"{entry['generation']}, {d['nodes']} nodes)", "",
                  f"- formula: `{d['formula']}`",
                  f"- simplified: `{d['sympy']}`",
                  f"- LaTeX: ${d['latex']}$",
                  f"- MMDetection: `{d['mmdet']}`", ""]
    if report.get("tuned"):
        lines += ["## Tuned constants (CMA-ES on the mini simulation, beyond the paper)", "",
                  "Scores are the mini simulation's (AP or mean IoU on its synthetic task), not "
                  "detector mAP. The property filters are not re-run on tuned constants.", ""]
        for t in report["tuned"]:
            line = mmdet_line(t["formula"], branch,
                              constants=[round(v, 6) for v in t["values"]])
            lines += [f"- `{t['formula']}`: score {t['start_score']:.4f} → {t['score']:.4f} "
                      f"with `{t['tuned']}`",
                      f"  - MMDetection: `{line}`"]
        lines.append("")
    lines += ["## Funnel (all generations)", "", "```"]
    rows = [{"stage": k, **v} for k, v in report["totals"].items()]
    lines += [format_funnel(rows), "```", ""]
    return "\n".join(lines)

"""``python -m jaxloss.filters.library_check``: check every known loss and print what it is.

For each library loss: it parses back from its own text and from its prefix form to the same
structure, it evaluates to finite values on detection-like inputs, and (for the published losses) the
paper's notation and the release's prefix string give the same values. Exit status 1 if any check
fails.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from jaxloss.engine.evaluate import evaluate
from jaxloss.space import branches
from jaxloss.space.library import ENTRIES, LIBRARY, RELEASE_FORMS
from jaxloss.space.parse import parse_graph


def demo_inputs(branch: str, n: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
    """Detection-like inputs: logits ~ N(0, 2²), labels, IoUs in [0, 1]; box areas in pixels."""
    rng = np.random.default_rng(seed)
    if branches.get(branch).class_axis:
        k = 5
        return dict(x=rng.normal(0, 2, (n, k)), y=np.eye(k)[rng.integers(0, k, n)],
                    w=rng.uniform(0, 1, n))
    if branch == "cls_binary":
        return dict(x=rng.normal(0, 2, n), y=rng.integers(0, 2, n).astype(float),
                    w=rng.uniform(0, 1, n))
    side = rng.uniform(8, 300, n)
    u = side ** 2 * rng.uniform(1.0, 1.8, n)
    i = side ** 2 * rng.uniform(0.05, 1.0, n)
    e = u * rng.uniform(1.0, 2.0, n)
    return dict(i=i, u=u, e=e)


def check_library(verbose: bool = True) -> list[str]:
    """Run every check; returns the failures (empty when all pass)."""
    failures: list[str] = []
    values: dict[str, np.ndarray] = {}
    for name in ("cls", "cls_binary", "reg"):
        names = [e.name for e in ENTRIES if e.branch == name]
        out = evaluate([LIBRARY[n] for n in names], **demo_inputs(name))
        values.update(zip(names, out))
    if verbose:
        print(f"{'loss':20s} {'branch':10s} {'nodes':>5s} {'mean':>9s}  formula")
    for e in ENTRIES:
        loss = LIBRARY[e.name]
        v = values[e.name]
        problems = []
        if parse_graph(str(loss), e.branch, None) != loss.graph:
            problems.append("text does not parse back to the same graph")
        if LIBRARY[e.name].key != type(loss)(parse_graph(loss.prefix(), e.branch, None),
                                             e.branch).key:
            problems.append("prefix form does not parse back to the same loss")
        if not np.all(np.isfinite(v)):
            problems.append(f"{np.sum(~np.isfinite(v))} non-finite values")
        if e.name in RELEASE_FORMS:
            (r,) = evaluate(RELEASE_FORMS[e.name], **demo_inputs(e.branch))
            if not np.allclose(r, v, rtol=1e-5, atol=2e-6 * np.max(np.abs(v))):
                problems.append("the release's prefix form gives other values")
        failures += [f"{e.name}: {p}" for p in problems]
        if verbose:
            status = "" if not problems else "  <-- " + "; ".join(problems)
            print(f"{e.name:20s} {e.branch:10s} {loss.size:5d} {np.mean(v):9.4f}  {loss}{status}")
    if verbose:
        print(f"\nrelease forms checked against the paper's notation: {', '.join(RELEASE_FORMS)}")
        print("all checks passed" if not failures else f"{len(failures)} checks FAILED")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxloss.filters.library_check",
                                     description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    return 1 if check_library() else 0


if __name__ == "__main__":
    sys.exit(main())

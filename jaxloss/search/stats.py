"""Summaries of repeated noisy measurements (a loss trained with several seeds): mean ± std, and
the paired difference of two losses measured on the same seeds with its Student-t interval.

A detector mAP from one short training is a sample; comparing losses means comparing such
summaries, never single values.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

CONFIDENCE = 0.95


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t distribution with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def spread(values: Sequence[float]) -> dict:
    """``{"n", "mean", "std", "relative_noise"}`` of the finite values (sample std, n - 1; None
    where undefined: no value, or one value for the std)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    mean = statistics.fmean(finite) if n else None
    std = statistics.stdev(finite) if n >= 2 else None
    return {"n": n, "mean": mean, "std": std,
            "relative_noise": std / mean if std is not None and mean else None}


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = CONFIDENCE) -> dict:
    """Mean of the paired differences a - b over the pairs where both are finite, and its
    ``level`` interval (Student's t, n - 1 degrees of freedom: mean ± t · sd / √n).

    Returns:
      ``{"mean", "std", "n", "ci": [low, high]}``; ``ci`` (and ``std``) None with fewer than 2
      pairs, ``mean`` None with none.
    """
    diffs = [float(x) - float(y) for x, y in zip(a, b)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    n = len(diffs)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "ci": None}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"mean": mean, "std": None, "n": 1, "ci": None}
    sd = statistics.stdev(diffs)
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "std": sd, "n": n, "ci": [mean - half, mean + half]}

"""``jaxloss.engine.evaluate``: per-sample values of many losses in one compiled call."""

from __future__ import annotations

import functools
from typing import Iterable, Union

import jax
import numpy as np

from jaxloss.engine import batched
from jaxloss.engine.inputs import leaf_table
from jaxloss.genome.population import Population, as_population, check_valid
from jaxloss.space.loss import Loss

LossLike = Union[Loss, str]


def evaluate(losses: Union[Population, LossLike, Iterable[LossLike]], *, branch: str | None = None,
             chunk: int = batched.DEFAULT_CHUNK, **inputs) -> np.ndarray:
    """Per-sample, unreduced values of every loss, in one compiled call.

    Args:
      losses: a :class:`Population`, a :class:`Loss`, formula text, or a list of losses / text.
      branch: needed only when ``losses`` is formula text.
      chunk: engine tuning (nodes per chunk); the result does not depend on it.
      **inputs: ``cls``: x [N, K] logits, y [N, K] one-hot, w [N]; ``cls_binary``: x, y, w [N];
        ``reg``: i, u, e [N]. Converted to float32.

    Returns:
      float32 NumPy array [len(losses), N]. Invalid values (NaN, ±inf) are returned as they are:
      judging them is the job of ``jaxloss.check``.
    """
    pop = as_population(losses, branch)
    check_valid(pop)
    leaves = leaf_table(pop.branch, inputs)
    genomes, block = batched.padded(pop, leaves.values.shape[1])
    # several CPU devices: deal the blocks out here and put the values back in order here, on the
    # host (see batched.evaluate_population)
    blocks = len(genomes) // block
    deal = functools.partial(batched.deal_blocks, blocks=blocks, shards=batched.shards_for(blocks))
    out = batched.evaluate_population(jax.tree.map(deal, genomes), jax.numpy.asarray(leaves.values),
                                     chunk=chunk, num_classes=leaves.num_classes, block=block,
                                     dealt=True)
    return deal(np.asarray(out), back=True)[: len(pop)]

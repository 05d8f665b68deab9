"""Tuning the numeric constants of a found loss with CMA-ES (evosax): a stage beyond the paper.

The search space holds whole numbers only (the constants 1, 2, 3 and what is built from them), so
a structure such as ``(1 - sigmoid(x))^2 * log(sigmoid(x))`` may be one real-valued constant away
from a better loss (a focal exponent of 1.7, a balance of 0.8). Given a loss, every *use* of a
whole number by a non-constant node becomes one real parameter (the two 1s of ``1 - y`` and
``1 - sigmoid(x)`` are tuned separately), started at its whole-number value and searched
multiplicatively, ``value = start · exp(z)`` (a constant keeps its sign, so the structure keeps its
meaning), with ``z`` from evosax's CMA-ES. The fitness is the mini optimization simulation's score
(:mod:`jaxloss.filters.minisim`) of the loss with those constants, averaged over several draws of the
simulation task (:data:`TASK_SEEDS`): tuned on one draw alone, the constants fit that draw's noise
and the gain does not carry to other draws (measured by ``benchmarks/tune_constants.py``). A whole
CMA-ES population trains side by side in one compiled call per draw.

A tuned loss prints with decimal constants (``TunedLoss.text``); it is not a genome (genomes hold
whole numbers), so it is evaluated by walking its graph (:func:`graph_function`, one compiled
function per structure) and trains detectors through ``bridge.to_torch(tuned)``. The property
filters are not re-run on it: the simulation scores it, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.engine.namespaces import JAX
from jaxloss.engine.walk import walk
from jaxloss.filters import minisim
from jaxloss.space import branches, ops
from jaxloss.space.branches import per_class_flags
from jaxloss.space.graph import Node, unshare_constants
from jaxloss.space.loss import Loss
from jaxloss.space.printing import to_text

def graph_function(nodes: Sequence[Node], branch: str, slots: Sequence[int]
                   ) -> Callable[[jax.Array, dict], jax.Array]:
    """``f(constants [len(slots)], inputs) → per-sample values [N]`` for one structure.

    ``inputs`` maps the branch's input names to arrays [N, K] (K = classes for ``cls``, else 1;
    per-sample inputs broadcast along K). Operators and guards are those of :mod:`jaxloss.space.ops`,
    as in the batched engine; the output is summed over classes where the engine sums it.
    """
    spec = branches.get(branch)
    sums_classes = per_class_flags(nodes, branch)[-1]
    slot_of = {node: k for k, node in enumerate(slots)}
    nodes = tuple(nodes)

    def f(constants: jax.Array, inputs: dict) -> jax.Array:
        like = next(v for name, v in inputs.items() if name in ("x", "i"))
        leaves = {ops.code(name): jnp.broadcast_to(inputs[name], like.shape)
                  for name in spec.inputs}

        def leaf(index: int, code: int) -> jax.Array:
            if index in slot_of:
                return jnp.broadcast_to(constants[slot_of[index]], like.shape)
            if code in leaves:
                return leaves[code]
            return jnp.full(like.shape, ops.CONSTANTS[code], like.dtype)

        out = walk(nodes, leaf, JAX)
        return (JAX.sum_last(out) if sums_classes else out)[:, 0]

    return f


@dataclass(frozen=True)
class TunedLoss:
    """A loss with real-valued constants.

    Attributes:
      loss: the loss it was tuned from (whole-number constants).
      nodes: its unshared graph (:func:`unshare_constants`).
      slots: indices in ``nodes`` of the tuned constants.
      start: their whole-number starting values.
      values: their tuned values.
      score: the simulation score with the tuned constants (mean over ``task_seeds``).
      start_score: the same for ``loss`` as it was.
      history: best score after each CMA-ES generation.
      task_seeds: the simulation task draws scored.
    """

    loss: Loss
    nodes: tuple
    slots: tuple
    start: tuple
    values: tuple
    score: float
    start_score: float
    history: tuple = field(default=())
    task_seeds: tuple = field(default=(0,))

    @property
    def branch(self) -> str:
        return self.loss.branch

    @property
    def text(self) -> str:
        """The formula with its tuned constants (4 significant digits), for reading."""
        return to_text(self.nodes, dict(zip(self.slots, self.values)))

    def function(self) -> Callable[[dict], jax.Array]:
        """``f(inputs) → per-sample values`` with the tuned constants (see :func:`graph_function`)."""
        f = graph_function(self.nodes, self.branch, self.slots)
        constants = jnp.asarray(self.values, jnp.float32)
        return lambda inputs: f(constants, inputs)

    def as_dict(self) -> dict:
        return {"formula": str(self.loss), "tuned": self.text, "start": list(self.start),
                "values": [float(v) for v in self.values], "score": self.score,
                "start_score": self.start_score, "history": list(self.history),
                "task_seeds": list(self.task_seeds)}


def _sim_inputs(branch: str, own_values: jax.Array, data: dict, num_classes: int) -> dict:
    """One candidate's inputs [M, K] from its own predictions ``own_values`` [n_own, S]."""
    if branch == "reg":
        return {name: own_values[k][:, None] for k, name in enumerate(("i", "u", "e"))}
    y = jnp.asarray(data["y"]).reshape(-1, num_classes)
    return {"x": own_values[0].reshape(y.shape), "y": y,
            "w": jnp.asarray(data["w"])[:, None]}


def simulation_scores(nodes: Sequence[Node], branch: str, slots: Sequence[int],
                      constants: jax.Array, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Simulation score [P] and divergence [P] of one structure with P constant vectors
    ``constants`` [P, len(slots)]: every row trains its own model, all in one compiled call."""
    score, diverged = _simulate_structure(tuple(nodes), branch, tuple(slots),
                                          jnp.asarray(constants, jnp.float32), seed)
    return np.asarray(score), np.asarray(diverged)


def _simulate_structure_impl(nodes, branch, slots, constants, seed):
    f = graph_function(nodes, branch, slots)
    data = minisim.task(branch, seed).train
    num_classes = minisim.task(branch, seed).num_classes

    def derivatives(own_values, directions):
        def one(c, own):
            loss = lambda o: f(c, _sim_inputs(branch, o, data, num_classes))  # noqa: E731
            return jnp.stack([jax.jvp(loss, (own,), (directions[t],))[1]
                              for t in range(directions.shape[0])])

        return jnp.moveaxis(jax.vmap(one)(constants, own_values), 1, 0)

    return minisim.train_and_score(derivatives, constants.shape[0], branch=branch, seed=seed)


_simulate_structure = jax.jit(_simulate_structure_impl, static_argnums=(0, 1, 2, 4))


TASK_SEEDS = (0, 1, 2)
"""The simulation task draws a tuning scores on (mean score): one draw alone is fitted to its
noise (``benchmarks/tune_constants.py`` measures this on further, held-out draws)."""


def _mean_scores(nodes, branch, slots, values, task_seeds) -> np.ndarray:
    """Mean simulation score over the task draws [P]; a draw on which a row diverges counts 0."""
    total = np.zeros(values.shape[0])
    for task_seed in task_seeds:
        score, bad = simulation_scores(nodes, branch, slots, values, seed=task_seed)
        total += np.where(bad, 0.0, score)
    return total / len(task_seeds)


def tune_constants(loss: Loss, *, generations: int = 20, population_size: int = 16,
                   std: float = 0.25, seed: int = 0, task_seeds: Sequence[int] = TASK_SEEDS,
                   progress: Callable[[int, float], None] | None = None) -> TunedLoss:
    """Tune the whole-number constants of ``loss`` with CMA-ES on the simulation score.

    Args:
      loss: a loss of any branch.
      generations: CMA-ES generations (each trains ``population_size`` models side by side).
      population_size: CMA-ES population (λ).
      std: initial step size of the log-scale factors ``z`` (0.25: about ±25% per constant).
      seed: CMA-ES sampling seed.
      task_seeds: the draws of the simulation task scored (mean); 0 is the search's own.
      progress: called as ``progress(generation, best_score)`` after each generation.

    Returns the best constants seen (never worse than the start: the start is scored first and
    kept if nothing beats it).
    """
    from evosax.algorithms import CMA_ES

    if generations < 1 or population_size < 2 or not task_seeds:
        raise ValueError("tune_constants needs generations >= 1, population_size >= 2 and at "
                         "least one task seed")
    nodes, slots, start = unshare_constants(loss.graph)
    start_arr = jnp.asarray(start, jnp.float32)
    # the start scored in a batch of the population's shape: one compiled function serves all
    score0 = _mean_scores(nodes, loss.branch, slots,
                          jnp.broadcast_to(start_arr, (population_size, len(slots))), task_seeds)
    best_score = float(score0[0])
    best_values = np.asarray(start, np.float64)
    history: list[float] = []
    if slots:
        strategy = CMA_ES(population_size=population_size, solution=jnp.zeros(len(slots)))
        params = strategy.default_params.replace(std_init=jnp.asarray(std))
        key = jax.random.key(seed)
        key, k_init = jax.random.split(key)
        state = strategy.init(k_init, jnp.zeros(len(slots)), params)
        for generation in range(generations):
            key, k_ask, k_tell = jax.random.split(key, 3)
            z, state = strategy.ask(k_ask, state, params)
            values = start_arr[None] * jnp.exp(z)
            score = _mean_scores(nodes, loss.branch, slots, values, task_seeds)
            state, _ = strategy.tell(k_tell, z, -jnp.asarray(score), state, params)
            top = int(np.argmax(score))
            if score[top] > best_score:
                best_score, best_values = float(score[top]), np.asarray(values[top], np.float64)
            history.append(best_score)
            if progress is not None:
                progress(generation + 1, best_score)
    return TunedLoss(loss, nodes, slots, tuple(float(s) for s in start),
                     tuple(float(v) for v in best_values), best_score, float(score0[0]),
                     tuple(history), tuple(task_seeds))

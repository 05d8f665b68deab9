"""Random search as an evosax algorithm over integer genomes (ask / tell): the ablation without
evolution (``python -m jaxloss.search --strategy random``).

* ``ask``: ``population_size`` fresh random valid genomes of the branch
  (:func:`jaxloss.genome.sample.sample`, at most ``max_nodes`` nodes each, padded to the capacity);
  nothing in the state steers them;
* ``tell``: records the best only: the best ``num_parents`` distinct measured genomes seen so far
  with their fitness (``state.population`` / ``state.fitness``, as :mod:`jaxloss.evolution.cse`
  keeps its parents, so a search reports both alike) and evosax's best solution. ``ask`` never
  reads them.

Solutions, ``init`` and ``tell`` are those of :class:`~jaxloss.evolution.cse.LossEvolution`: the
solution template is one genome (a :class:`~jaxloss.genome.population.Population` with arrays [C]
and []); ``ask`` returns and ``tell`` takes a Population [N]; fitness is minus the score, and NaN
and ±inf are not measurements.

The sampler is host-side Python (it draws graphs node by node), so ``ask`` is not jitted: it runs on
the host and follows evosax's ``ask(key, state, params)`` signature; ``init`` and ``tell`` are
evosax's jitted ones.
"""

from __future__ import annotations

import jax
from evosax.algorithms.population_based.base import Params as BaseParams
from flax import struct

from jaxloss.evolution.base import GenomeAlgorithm, State
from jaxloss.genome.population import Population, pad_capacity
from jaxloss.genome.sample import sample


@struct.dataclass
class Params(BaseParams):
    pass


class RandomSearch(GenomeAlgorithm):
    """Fresh random genomes every generation (see the module docstring).

    Args:
      population_size: N, genomes per ``ask``.
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``.
      capacity: C, the genomes' capacity.
      num_parents: P, the best measured genomes ``tell`` records.
      max_nodes: the largest node count of a sampled genome (at most ``capacity``).
    """

    def __init__(self, population_size: int, branch: str, capacity: int, num_parents: int,
                 max_nodes: int = 16):
        super().__init__(population_size, branch, capacity, num_parents)
        self.max_nodes = min(max_nodes, capacity)
        self._default_params = Params()

    def ask(self, key: jax.Array, state: State, params: Params) -> tuple[Population, State]:
        """``population_size`` random valid genomes (a Population [N] of JAX arrays), and the
        state unchanged.

        Host-side, not jitted (the sampler is Python): the sampler's seed is drawn from ``key``
        (a uniform integer in [0, 2**31 - 1)), so the same key gives the same genomes.
        """
        population, state = self._ask(key, state, params)
        return jax.vmap(self._unravel_solution)(population), state

    def _ask(self, key: jax.Array, state: State, params: Params):
        """Host-side: raveled random genomes [N, 3C + 1] and the state unchanged."""
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        genomes = sample(self.branch, self.population_size, seed=seed, max_nodes=self.max_nodes)
        genomes = pad_capacity(genomes, self.capacity).jax()
        return jax.vmap(self._ravel_solution)(genomes), state

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
import jax.numpy as jnp
from evosax.algorithms.population_based.base import (
    Params as BaseParams,
)
from evosax.algorithms.population_based.base import (
    PopulationBasedAlgorithm,
)
from evosax.algorithms.population_based.base import (
    State as BaseState,
)
from flax import struct

from jaxloss.evolution.cse import best_distinct, measured
from jaxloss.genome.population import Population, empty_genome, pad_capacity
from jaxloss.genome.sample import sample
from jaxloss.space import branches


@struct.dataclass
class State(BaseState):
    pass


@struct.dataclass
class Params(BaseParams):
    pass


class RandomSearch(PopulationBasedAlgorithm):
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
        self.branch = branches.get(branch).name
        super().__init__(population_size, empty_genome(capacity, self.branch))
        self.capacity = capacity
        self.num_parents = num_parents
        self.max_nodes = min(max_nodes, capacity)
        self._default_params = Params()

    def init(self, key, population: Population, fitness, params):
        """The first record: ``population`` (a Population [P]) and its fitness [P] (+inf: empty)."""
        return super().init(key, population, measured(jnp.asarray(fitness, jnp.float32)), params)

    def ask(self, key: jax.Array, state: State, params: Params) -> tuple[Population, State]:
        """``population_size`` random valid genomes (a Population [N] of JAX arrays), and the
        state unchanged.

        Host-side, not jitted (the sampler is Python): the sampler's seed is drawn from ``key``
        (a uniform integer in [0, 2**31 - 1)), so the same key gives the same genomes.
        """
        population, state = self._ask(key, state, params)
        return jax.vmap(self._unravel_solution)(population), state

    def tell(self, key, population: Population, fitness, state, params):
        """Candidates (a Population [N]) and their fitness [N]; NaN and ±inf count as not
        measured."""
        return super().tell(key, population, measured(jnp.asarray(fitness, jnp.float32)), state,
                            params)

    def _init(self, key: jax.Array, params: Params) -> State:
        return State(
            population=jnp.zeros((self.num_parents, self.num_dims), jnp.int32),
            fitness=jnp.full((self.num_parents,), jnp.inf),
            best_solution=jnp.zeros(self.num_dims, jnp.int32),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    def _ask(self, key: jax.Array, state: State, params: Params):
        """Host-side: raveled random genomes [N, 3C + 1] and the state unchanged."""
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        genomes = sample(self.branch, self.population_size, seed=seed, max_nodes=self.max_nodes)
        genomes = pad_capacity(genomes, self.capacity).jax()
        return jax.vmap(self._ravel_solution)(genomes), state

    def _tell(self, key, population, fitness, state: State, params: Params) -> State:
        kept, kept_fitness = best_distinct(jnp.concatenate([state.population, population]),
                                           jnp.concatenate([state.fitness, fitness]),
                                           self.num_parents)
        return state.replace(population=kept, fitness=kept_fitness)

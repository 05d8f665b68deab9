"""What every evosax algorithm over loss genomes shares (:mod:`.cse`, :mod:`.random`): the solution
template is one genome (a :class:`~jaxloss.genome.population.Population` with arrays [C] and []),
``init`` / ``ask`` / ``tell`` take and return a Population [N], fitness is minus a score, and a value
that is not a measurement (NaN, ±inf) is +inf: an empty slot, never a candidate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from evosax.algorithms.population_based.base import State as BaseState
from flax import struct

from jaxloss.genome.population import Population, empty_genome
from jaxloss.space import branches


@struct.dataclass
class State(BaseState):
    pass


class GenomeAlgorithm(PopulationBasedAlgorithm):
    """An evosax population-based algorithm whose state keeps up to ``num_parents`` (P) measured
    genomes with their fitness (+inf: an empty slot); subclasses give ``_ask`` (and ``_tell``).

    Args:
      population_size: N, genomes per ``ask``.
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``.
      capacity: C, the genomes' capacity.
      num_parents: P.
    """

    def __init__(self, population_size: int, branch: str, capacity: int, num_parents: int):
        self.branch = branches.get(branch).name
        super().__init__(population_size, empty_genome(capacity, self.branch))
        self.capacity = capacity
        self.num_parents = num_parents

    def init(self, key, population: Population, fitness, params):
        """Genomes ``population`` (a Population [P]) and their fitness [P] (+inf: empty slot)."""
        return super().init(key, population, measured(jnp.asarray(fitness, jnp.float32)), params)

    def tell(self, key, population: Population, fitness, state, params):
        """Candidates (a Population [N]) and their fitness [N]; NaN and ±inf count as not
        measured."""
        return super().tell(key, population, measured(jnp.asarray(fitness, jnp.float32)), state,
                            params)

    def _init(self, key: jax.Array, params) -> State:
        return State(
            population=jnp.zeros((self.num_parents, self.num_dims), jnp.int32),
            fitness=jnp.full((self.num_parents,), jnp.inf),
            best_solution=jnp.zeros(self.num_dims, jnp.int32),
            best_fitness=jnp.inf,
            generation_counter=0,
        )

    def _tell(self, key, population, fitness, state: State, params) -> State:
        """The best P distinct of the kept genomes and the candidates ((mu + lambda))."""
        kept, kept_fitness = best_distinct(jnp.concatenate([state.population, population]),
                                           jnp.concatenate([state.fitness, fitness]),
                                           self.num_parents)
        return state.replace(population=kept, fitness=kept_fitness)


def measured(fitness: jax.Array) -> jax.Array:
    """Fitness with every value that is not a measurement (NaN, ±inf) as +inf: an empty slot."""
    return jnp.where(jnp.isfinite(fitness), fitness, jnp.inf)


def initial_parents(genome: Population, fitness: float, num_parents: int
                    ) -> tuple[Population, jax.Array]:
    """The first parents: one genome with its measured fitness, the other slots empty.

    Args:
      genome: a Population of one genome (the initial loss L_I).
      fitness: its measured fitness (minus its score).
      num_parents: P, the number of slots.

    Returns:
      (parents, a Population [P] of JAX arrays; fitness float32 [P]) for ``init``: genome 0 is
      the genome with ``fitness``, the others copies of it with +inf (empty slots, never drawn).
    """
    if len(genome) != 1:
        raise ValueError(f"initial_parents takes one genome, got {len(genome)}")
    parents = jax.tree.map(lambda a: jnp.repeat(a, num_parents, axis=0), genome.jax())
    return parents, jnp.full((num_parents,), jnp.inf).at[0].set(fitness)


def num_filled(state) -> int:
    """How many parent slots hold a measured genome."""
    return int(jnp.sum(jnp.isfinite(state.fitness)))


def best_distinct(pool: jax.Array, fitness: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The best ``k`` distinct measured rows of a pool (a (mu + lambda) selection).

    Args:
      pool: raveled genomes [M, D] (any column order: only row equality matters).
      fitness: float [M], lower is better; NaN and ±inf are not measurements.
      k: rows to keep (k <= M).

    Returns:
      (rows [k], fitness [k]) by ascending fitness; identical rows count once (the copy kept is
      the first with the best fitness, so a re-measured parent never loses its slot to an
      unmeasured copy of itself); slots without a measured row get +inf (empty).
    """
    fitness = measured(fitness)
    order = jnp.argsort(fitness, stable=True)
    pool, fitness = pool[order], fitness[order]
    fitness = jnp.where(_repeats(pool), jnp.inf, fitness)
    best = jnp.argsort(fitness, stable=True)[:k]
    return pool[best], fitness[best]


def _repeats(rows):
    """bool [M]: the row equals an earlier row (identical genomes count once)."""
    order = jnp.lexsort(rows.T[::-1])
    sorted_rows = rows[order]
    same_as_previous = jnp.concatenate([jnp.zeros(1, bool),
                                        jnp.all(sorted_rows[1:] == sorted_rows[:-1], axis=1)])
    # within a run of equal rows, the first in sorted order (lowest original index) is kept
    return jnp.zeros(rows.shape[0], bool).at[order].set(same_as_previous)

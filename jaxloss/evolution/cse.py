"""The CSE-Autoloss evolution as an evosax algorithm over integer genomes (ask / tell).

A population-based evosax algorithm whose solution template is one genome, a
:class:`~jaxloss.genome.population.Population` with ops, lhs, rhs int32 [C], size int32 [] and the
static branch (:func:`~jaxloss.genome.population.empty_genome`). ``ask`` returns, and ``tell`` and
``init`` take, a batch of genomes: a Population with arrays [N, C] and [N]. Inside the state evosax
keeps them raveled, as int32 rows of length 3C + 1 (ops, lhs, rhs, size); nothing here depends on
that column order:

* state: up to ``num_parents`` (P) *parents* and their fitness (evosax minimises: use minus the
  score). Only genomes with a measured fitness are parents: a slot whose fitness is +inf is empty
  (a candidate that failed a stage, or was never evaluated, gets +inf; so do NaN and -inf, which
  are not measurements);
* ``ask``: ``population_size`` offspring, each from two parents chosen by tournament selection
  (Goldberg & Deb 1991) *among the filled slots only*, crossed over with probability
  ``p_crossover`` and mutated with probability ``p_mutation`` (:mod:`jaxloss.genome.variation`); an
  offspring that came out identical to one of its parents (already evaluated) is mutated again, up
  to ``refresh_tries`` times;
* ``tell``: the new parents are the best P of the evaluated offspring together with the current
  parents (a (μ + λ) selection, so a good loss is never lost), identical genomes kept once. With
  detector stages only the top-K candidates of a generation get a fitness, so P <= K filled slots
  per generation is the paper's relation (Algorithm 1); fewer than P measured candidates leave the
  other slots empty.

A search starts from one measured parent, the initial loss L_I (:func:`initial_parents`). No slot is
filled by a placeholder fitness: ``ask`` needs at least one filled slot (``num_filled``).

So the search loop reads like any evosax loop::

    strategy = LossEvolution(population_size=N, branch="cls_binary", capacity=16, num_parents=P)
    params = strategy.default_params
    state = strategy.init(key, initial_parents, initial_fitness, params)
    for generation in range(E):
        population, state = strategy.ask(key_ask, state, params)   # a Population [N]
        fitness = evaluate(population)            # the funnel: checks, simulation, detectors
        state, metrics = strategy.tell(key_tell, population, fitness, state, params)

Random search, the ablation without evolution, is its own algorithm with the same init / tell
(:mod:`jaxloss.evolution.random`).
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

from jaxloss.genome.population import Population, empty_genome
from jaxloss.genome.variation import tournament, vary
from jaxloss.space import branches


@struct.dataclass
class State(BaseState):
    pass


@struct.dataclass
class Params(BaseParams):
    p_crossover: float
    p_mutation: float
    tournament_size: int = struct.field(pytree_node=False, default=3)
    refresh_tries: int = struct.field(pytree_node=False, default=3)


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


class LossEvolution(PopulationBasedAlgorithm):
    """Tournament-selection evolution of loss genomes (see the module docstring)."""

    def __init__(self, population_size: int, branch: str, capacity: int, num_parents: int,
                 p_crossover: float = 0.5, p_mutation: float = 0.5, tournament_size: int = 3,
                 refresh_tries: int = 3):
        self.branch = branches.get(branch).name
        super().__init__(population_size, empty_genome(capacity, self.branch))
        self.capacity = capacity
        self.num_parents = num_parents
        self._default_params = Params(p_crossover=p_crossover, p_mutation=p_mutation,
                                      tournament_size=tournament_size,
                                      refresh_tries=refresh_tries)

    def init(self, key, population: Population, fitness, params):
        """Parents ``population`` (a Population [P]) and their fitness [P] (+inf: empty slot)."""
        return super().init(key, population, measured(jnp.asarray(fitness, jnp.float32)), params)

    def tell(self, key, population: Population, fitness, state, params):
        """Offspring (a Population [N]) and their fitness [N]; NaN and ±inf count as not
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
        k_mother, k_father, k_vary = jax.random.split(key, 3)
        n = self.population_size
        mothers = tournament(k_mother, state.fitness, n, params.tournament_size)
        fathers = tournament(k_father, state.fitness, n, params.tournament_size)
        parents = jax.vmap(self._unravel_solution)(state.population)
        children, _ = vary(k_vary, parents, mothers, fathers, params.p_crossover,
                           params.p_mutation, refresh_tries=params.refresh_tries)
        return jax.vmap(self._ravel_solution)(children), state

    def _tell(self, key, population, fitness, state: State, params: Params) -> State:
        kept, kept_fitness = best_distinct(jnp.concatenate([state.population, population]),
                                           jnp.concatenate([state.fitness, fitness]),
                                           self.num_parents)
        return state.replace(population=kept, fitness=kept_fitness)


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

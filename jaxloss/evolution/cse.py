"""The CSE-Autoloss evolution as an evosax algorithm over integer genomes (ask / tell).

A population-based evosax algorithm whose solutions are loss genomes ({ops, lhs, rhs: [C], size: []},
int32; raveled by evosax to int32 vectors of length 3C + 1):

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
        population, state = strategy.ask(key_ask, state, params)
        fitness = evaluate(population)            # the funnel: checks, simulation, detectors
        state, metrics = strategy.tell(key_tell, population, fitness, state, params)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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

from jaxloss.genome.population import Population
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


def genome_template(capacity: int) -> dict:
    """The solution pytree of one genome (all int32)."""
    z = jnp.zeros(capacity, jnp.int32)
    return {"ops": z, "lhs": z, "rhs": z, "size": jnp.zeros((), jnp.int32)}


def as_solutions(pop: Population) -> dict:
    """A Population as a batch of solution pytrees (leading dimension P)."""
    return {"ops": jnp.asarray(pop.ops, jnp.int32), "lhs": jnp.asarray(pop.lhs, jnp.int32),
            "rhs": jnp.asarray(pop.rhs, jnp.int32), "size": jnp.asarray(pop.size, jnp.int32)}


def from_solutions(solutions: dict, branch: str) -> Population:
    """A batch of solution pytrees as a (NumPy) Population."""
    return Population(*(np.asarray(solutions[k], np.int32) for k in ("ops", "lhs", "rhs", "size")),
                      branch)


def measured(fitness: jax.Array) -> jax.Array:
    """Fitness with every value that is not a measurement (NaN, ±inf) as +inf: an empty slot."""
    return jnp.where(jnp.isfinite(fitness), fitness, jnp.inf)


def initial_parents(genome: Population, fitness: float, num_parents: int
                    ) -> tuple[dict, jax.Array]:
    """The first parents: one genome with its measured fitness, the other slots empty.

    Args:
      genome: a Population of one genome (the initial loss L_I).
      fitness: its measured fitness (minus its score).
      num_parents: P, the number of slots.

    Returns:
      (solutions [P], fitness float32 [P]) for :meth:`LossEvolution.init`: row 0 is the genome with
      ``fitness``, the other rows copies of it with +inf (empty slots, never drawn).
    """
    if len(genome) != 1:
        raise ValueError(f"initial_parents takes one genome, got {len(genome)}")
    solutions = jax.tree.map(lambda a: jnp.repeat(a, num_parents, axis=0), as_solutions(genome))
    return solutions, jnp.full((num_parents,), jnp.inf).at[0].set(fitness)


def num_filled(state) -> int:
    """How many parent slots hold a measured genome."""
    return int(jnp.sum(jnp.isfinite(state.fitness)))


class LossEvolution(PopulationBasedAlgorithm):
    """Tournament-selection evolution of loss genomes (see the module docstring)."""

    def __init__(self, population_size: int, branch: str, capacity: int, num_parents: int,
                 p_crossover: float = 0.5, p_mutation: float = 0.5, tournament_size: int = 3,
                 refresh_tries: int = 3):
        super().__init__(population_size, genome_template(capacity))
        self.branch = branches.get(branch).name
        self.capacity = capacity
        self.num_parents = num_parents
        self._default_params = Params(p_crossover=p_crossover, p_mutation=p_mutation,
                                      tournament_size=tournament_size,
                                      refresh_tries=refresh_tries)

    def init(self, key, population, fitness, params):
        """Parents ``population`` [P] with their fitness [P] (+inf: an empty slot)."""
        return super().init(key, population, measured(jnp.asarray(fitness, jnp.float32)), params)

    def tell(self, key, population, fitness, state, params):
        """Offspring [N] and their fitness [N]; NaN and ±inf count as not measured."""
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
        genomes = ((parents["ops"], parents["lhs"], parents["rhs"]), parents["size"])
        ((o, a, b), size), _ = vary(k_vary, genomes, mothers, fathers, params.p_crossover,
                                    params.p_mutation, branch_name=self.branch,
                                    refresh_tries=params.refresh_tries)
        children = {"ops": o, "lhs": a, "rhs": b, "size": size}
        return jax.vmap(self._ravel_solution)(children), state

    def _tell(self, key, population, fitness, state: State, params: Params) -> State:
        pool = jnp.concatenate([state.population, population])
        pool_fitness = measured(jnp.concatenate([state.fitness, fitness]))
        # a genome counts once; the copy kept is the first with the best fitness, so a
        # re-measured parent never loses its slot to an unmeasured copy of itself
        order = jnp.argsort(pool_fitness, stable=True)
        pool, pool_fitness = pool[order], pool_fitness[order]
        pool_fitness = jnp.where(_repeats(pool), jnp.inf, pool_fitness)
        best = jnp.argsort(pool_fitness, stable=True)[: self.num_parents]
        return state.replace(population=pool[best], fitness=pool_fitness[best])


def _repeats(rows):
    """bool [M]: the row equals an earlier row (identical genomes count once)."""
    order = jnp.lexsort(rows.T[::-1])
    sorted_rows = rows[order]
    same_as_previous = jnp.concatenate([jnp.zeros(1, bool),
                                        jnp.all(sorted_rows[1:] == sorted_rows[:-1], axis=1)])
    # within a run of equal rows, the first in sorted order (lowest original index) is kept
    return jnp.zeros(rows.shape[0], bool).at[order].set(same_as_previous)

"""The CSE-Autoloss evolution as an evosax algorithm over integer genomes (ask / tell).

A population-based evosax algorithm whose solutions are loss genomes ({ops, lhs, rhs: [C], size: []},
int32; raveled by evosax to int32 vectors of length 3C + 1):

* state: the current *parents* (``num_parents`` genomes) and their fitness (evosax minimises: use
  minus the score; a candidate that failed a stage gets +inf);
* ``ask``: ``population_size`` offspring, each from two parents chosen by tournament selection
  (Goldberg & Deb 1991), crossed over with probability ``p_crossover`` and mutated with probability
  ``p_mutation`` (:mod:`jaxloss.variation`);
* ``tell``: the new parents are the best ``num_parents`` of the evaluated offspring together with
  the current parents (a (μ + λ) selection, so a good loss is never lost), identical genomes kept
  once.

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
    PopulationBasedAlgorithm,
    State as BaseState,
)
from flax import struct

from jaxloss import branches
from jaxloss.genome import Population
from jaxloss.variation import tournament, vary


@struct.dataclass
class State(BaseState):
    pass


@struct.dataclass
class Params(BaseParams):
    p_crossover: float
    p_mutation: float
    tournament_size: int = struct.field(pytree_node=False, default=3)


def genome_template(capacity: int) -> dict:
    """The solution pytree of one genome (all int32)."""
    z = jnp.zeros(capacity, jnp.int32)
    return {"ops": z, "lhs": z, "rhs": z, "size": jnp.zeros((), jnp.int32)}


def as_solutions(pop: Population) -> dict:
    """A Population as a batch of solution pytrees (leading dimension P)."""
    return {"ops": jnp.asarray(pop.ops, jnp.int32), "lhs": jnp.asarray(pop.lhs, jnp.int32),
            "rhs": jnp.asarray(pop.rhs, jnp.int32), "size": jnp.asarray(pop.size, jnp.int32)}


def as_population(solutions: dict, branch: str) -> Population:
    """A batch of solution pytrees as a (NumPy) Population."""
    return Population(*(np.asarray(solutions[k], np.int32) for k in ("ops", "lhs", "rhs", "size")),
                      branch)


class LossEvolution(PopulationBasedAlgorithm):
    """Tournament-selection evolution of loss genomes (see the module docstring)."""

    def __init__(self, population_size: int, branch: str, capacity: int, num_parents: int,
                 p_crossover: float = 0.5, p_mutation: float = 0.5, tournament_size: int = 3):
        super().__init__(population_size, genome_template(capacity))
        self.branch = branches.get(branch).name
        self.capacity = capacity
        self.num_parents = num_parents
        self._default_params = Params(p_crossover=p_crossover, p_mutation=p_mutation,
                                      tournament_size=tournament_size)

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
                                    params.p_mutation, branch_name=self.branch)
        children = {"ops": o, "lhs": a, "rhs": b, "size": size}
        return jax.vmap(self._ravel_solution)(children), state

    def _tell(self, key, population, fitness, state: State, params: Params) -> State:
        pool = jnp.concatenate([state.population, population])
        pool_fitness = jnp.concatenate([state.fitness, jnp.where(jnp.isnan(fitness), jnp.inf,
                                                                 fitness)])
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

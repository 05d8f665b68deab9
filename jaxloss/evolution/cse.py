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
from evosax.algorithms.population_based.base import Params as BaseParams
from flax import struct

from jaxloss.evolution.base import GenomeAlgorithm, State
from jaxloss.genome.variation import tournament, vary


@struct.dataclass
class Params(BaseParams):
    p_crossover: float
    p_mutation: float
    tournament_size: int = struct.field(pytree_node=False, default=3)
    refresh_tries: int = struct.field(pytree_node=False, default=3)


class LossEvolution(GenomeAlgorithm):
    """Tournament-selection evolution of loss genomes (see the module docstring)."""

    def __init__(self, population_size: int, branch: str, capacity: int, num_parents: int,
                 p_crossover: float = 0.5, p_mutation: float = 0.5, tournament_size: int = 3,
                 refresh_tries: int = 3):
        super().__init__(population_size, branch, capacity, num_parents)
        self._default_params = Params(p_crossover=p_crossover, p_mutation=p_mutation,
                                      tournament_size=tournament_size,
                                      refresh_tries=refresh_tries)

    def _ask(self, key: jax.Array, state: State, params: Params):
        k_mother, k_father, k_vary = jax.random.split(key, 3)
        n = self.population_size
        mothers = tournament(k_mother, state.fitness, n, params.tournament_size)
        fathers = tournament(k_father, state.fitness, n, params.tournament_size)
        parents = jax.vmap(self._unravel_solution)(state.population)
        children, _ = vary(k_vary, parents, mothers, fathers, params.p_crossover,
                           params.p_mutation, refresh_tries=params.refresh_tries)
        return jax.vmap(self._ravel_solution)(children), state

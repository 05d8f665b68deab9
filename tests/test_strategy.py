"""The evolution (jaxloss.strategy, jaxloss.variation): tournaments draw only measured parents,
tell is a (mu + lambda) selection of measured genomes, every random draw of a mutation has its own
key (the distribution of what a mutation produces is tested, not only that it runs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxloss
from jaxloss.evolution.cse import (
    LossEvolution,
    as_solutions,
    from_solutions,
    initial_parents,
    num_filled,
)
from jaxloss.genome import variation
from jaxloss.genome.population import from_graphs
from jaxloss.space import branches
from jaxloss.space.library import LIBRARY
from jaxloss.space.parse import parse_graph

BRANCH = "cls_binary"
CAPACITY = 24


def _genomes(*formulas):
    return from_graphs([parse_graph(f, BRANCH, CAPACITY) for f in formulas], BRANCH, CAPACITY)


def _keys(pop):
    return [pop[k].key for k in range(len(pop))]


def test_the_strategy_and_its_conversions_are_exported_at_the_top_level():
    assert jaxloss.LossEvolution is LossEvolution
    pop = _genomes("x", "log(sigmoid(x)) * w", "y - x")
    back = jaxloss.from_solutions(jaxloss.as_solutions(pop), BRANCH)
    assert _keys(back) == _keys(pop)
    assert (back.ops == pop.ops).all() and (back.size == pop.size).all()


def test_tournaments_draw_only_entries_with_a_measured_fitness():
    fitness = jnp.array([jnp.inf, 1.0, jnp.nan, -jnp.inf, 2.0, jnp.inf])
    n = 40_000
    one = np.asarray(variation.tournament(jax.random.key(0), fitness, n, size=1))
    assert set(np.unique(one)) == {1, 4}
    # size 1: uniform over the two measured entries
    counts = np.bincount(one, minlength=6)[[1, 4]]
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    # size 3: entry 1 (lower is better) wins unless all three draws are entry 4: 1 - 1/8
    three = np.asarray(variation.tournament(jax.random.key(1), fitness, n, size=3))
    assert set(np.unique(three)) == {1, 4}
    share = np.mean(three == 1)
    assert abs(share - 7 / 8) < 4 * np.sqrt(7 / 64 / n), share


def test_a_single_measured_parent_wins_every_tournament():
    fitness = jnp.array([jnp.inf] * 5 + [0.3] + [jnp.inf] * 4)
    assert (np.asarray(variation.tournament(jax.random.key(2), fitness, 500, 3)) == 5).all()


def _strategy(num_parents, population_size=6, **kw):
    return LossEvolution(population_size=population_size, branch=BRANCH, capacity=CAPACITY,
                         num_parents=num_parents, **kw)


def test_tell_keeps_the_best_measured_distinct_genomes_of_parents_and_offspring():
    strategy = _strategy(num_parents=3)
    params = strategy.default_params
    parents = _genomes("x", "x * y", "x + y")
    state = strategy.init(jax.random.key(0), as_solutions(parents),
                          jnp.array([-0.5, jnp.inf, jnp.inf]), params)
    assert num_filled(state) == 1
    kids = _genomes("exp(x)", "x - y", "w * x", "sigmoid(x)", "x", "exp(x)")
    #               better   nan      +inf     -inf         parent  duplicate of kid 0
    fitness = jnp.array([-0.9, jnp.nan, jnp.inf, -jnp.inf, -0.5, -0.9])
    state, _ = strategy.tell(jax.random.key(1), as_solutions(kids), fitness, state, params)
    kept = from_solutions(jax.vmap(strategy._unravel_solution)(state.population), BRANCH)
    fit = np.asarray(state.fitness)
    # two measured distinct genomes (exp(x) once, x once); the third slot stays empty
    assert num_filled(state) == 2
    assert _keys(kept)[:2] == [_genomes("exp(x)")[0].key, _genomes("x")[0].key]
    np.testing.assert_allclose(fit[:2], [-0.9, -0.5])
    assert np.isinf(fit[2]) and fit[2] > 0
    # NaN and -inf are no measurements: they never become the best either
    assert float(state.best_fitness) == pytest.approx(-0.9)


def test_tell_is_a_mu_plus_lambda_selection():
    strategy = _strategy(num_parents=2, population_size=3)
    params = strategy.default_params
    state = strategy.init(jax.random.key(0), as_solutions(_genomes("x", "x * y")),
                          jnp.array([-0.8, -0.7]), params)
    # worse offspring do not replace better parents; a better one replaces the worst parent
    kids = _genomes("exp(x)", "w * x", "y - x")
    state, _ = strategy.tell(jax.random.key(1), as_solutions(kids),
                             jnp.array([-0.1, -0.75, jnp.nan]), state, params)
    kept = from_solutions(jax.vmap(strategy._unravel_solution)(state.population), BRANCH)
    assert _keys(kept) == [_genomes("x")[0].key, _genomes("w * x")[0].key]
    np.testing.assert_allclose(np.asarray(state.fitness), [-0.8, -0.75])


def test_ask_breeds_only_from_measured_parents_and_proposes_no_copy_of_them():
    loss = str(LIBRARY["FLI"])
    unmeasured = "x * y"
    parents = _genomes(loss, unmeasured, unmeasured, unmeasured)
    fitness = jnp.array([-0.4, jnp.inf, jnp.inf, jnp.inf])
    n = 400
    plain = _strategy(num_parents=4, population_size=n, p_crossover=0.0, p_mutation=0.0,
                      refresh_tries=0)
    state = plain.init(jax.random.key(0), as_solutions(parents), fitness, plain.default_params)
    kids, _ = plain.ask(jax.random.key(1), state, plain.default_params)
    keys = _keys(from_solutions(kids, BRANCH))
    assert set(keys) == {parents[0].key}  # no variation: copies of the one measured parent

    strategy = _strategy(num_parents=4, population_size=n)  # the search's defaults
    state = strategy.init(jax.random.key(0), as_solutions(parents), fitness,
                          strategy.default_params)
    kids, _ = strategy.ask(jax.random.key(1), state, strategy.default_params)
    keys = _keys(from_solutions(kids, BRANCH))
    assert parents[1].key not in keys  # never bred from an unmeasured slot
    # an offspring equal to its (already measured) parent is mutated again, up to 3 times
    assert sum(k == parents[0].key for k in keys) <= 0.01 * n
    assert len(set(keys)) > 0.5 * n


def test_initial_parents_hold_one_measured_genome():
    pop = _genomes(str(LIBRARY["FLI"]))
    solutions, fitness = initial_parents(pop, -0.25, 5)
    assert solutions["ops"].shape == (5, CAPACITY)
    np.testing.assert_array_equal(np.isfinite(np.asarray(fitness)), [True] + [False] * 4)
    assert float(fitness[0]) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="one genome"):
        initial_parents(_genomes("x", "y"), 0.0, 3)


def _mutation_blocks(formula: str, n: int, seed: int = 0):
    pop = _genomes(formula)
    genome = ((jnp.asarray(pop.ops[0]), jnp.asarray(pop.lhs[0]), jnp.asarray(pop.rhs[0])),
              jnp.asarray(pop.size[0]))
    blocks = jax.jit(jax.vmap(lambda k: variation._mutation_block(k, genome, BRANCH)))(
        jax.random.split(jax.random.key(seed), n))
    return tuple(map(np.asarray, blocks))


def test_mutations_draw_each_kind_and_each_subtree_leaf_and_shape_with_its_frequency():
    """Every random choice of a mutation has its own key. With one key for the fresh leaf and the
    subtree's shape, randint gave shape == leaf index % 3: 12 of the 18 (leaf, shape) cells of
    subtree replacement never occurred."""
    n = 30_000
    _, t_ops, _, _, t_len, kind = _mutation_blocks(str(LIBRARY["FLI"]), n)
    # the parent has operator and leaf nodes, so every kind is drawn uniformly
    counts = np.bincount(kind, minlength=len(variation.MUTATIONS))
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    leaves = list(branches.get(BRANCH).leaves)
    sub = kind == variation.MUTATIONS.index("subtree")
    cells = np.zeros((len(leaves), 3), int)
    for leaf, length in zip(t_ops[sub, 0], t_len[sub]):
        cells[leaves.index(int(leaf)), int(length) - 1] += 1
    assert (cells > 0).all(), cells
    assert stats.chisquare(cells.ravel()).pvalue > 1e-4, cells


def test_insertion_side_and_its_fresh_leaf_are_independent():
    n = 30_000
    i, t_ops, t_lhs, _, t_len, kind = _mutation_blocks(str(LIBRARY["FLI"]), n, seed=1)
    insert = kind == variation.MUTATIONS.index("insert")
    binary = insert & (t_len == 2)  # binary(i, leaf) or binary(leaf, i), with a fresh leaf
    leaves = list(branches.get(BRANCH).leaves)
    side = (t_lhs[binary, 1] == i[binary]).astype(int)  # 1: i is the left operand
    table = np.zeros((2, len(leaves)), int)
    for s, leaf in zip(side, t_ops[binary, 0]):
        table[s, leaves.index(int(leaf))] += 1
    assert (table > 0).all(), table
    assert stats.chi2_contingency(table).pvalue > 1e-4, table
    # unary insertion, binary(i, leaf) and binary(leaf, i): a third each
    shapes = [int(np.sum(t_len[insert] == 1)), int(np.sum(side == 1)), int(np.sum(side == 0))]
    assert sum(shapes) == int(insert.sum())
    assert stats.chisquare(shapes).pvalue > 1e-4, shapes

"""The evolution (jaxloss.evolution.cse, jaxloss.evolution.random, jaxloss.genome.variation):
solutions are Population pytrees, tournaments draw only measured parents, tell is a (mu + lambda)
selection of measured genomes, offspring are valid and vary at the rates asked, every random draw
of a mutation has its own key (the distribution of what a mutation produces is tested, not only
that it runs), random search asks fresh random genomes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxloss
from jaxloss.evolution.base import initial_parents, num_filled
from jaxloss.evolution.cse import LossEvolution
from jaxloss.evolution.random import RandomSearch
from jaxloss.genome import variation
from jaxloss.genome.population import Population, from_graphs, pad_capacity, validity_errors
from jaxloss.space import branches
from jaxloss.space.library import LIBRARY
from jaxloss.space.parse import parse_graph

BRANCH = "cls_binary"
CAPACITY = 24


def _genomes(*formulas):
    return from_graphs([parse_graph(f, BRANCH, CAPACITY) for f in formulas], BRANCH, CAPACITY)


def _keys(pop):
    return [pop[k].key for k in range(len(pop))]


def test_the_strategies_are_exported_and_their_solutions_are_populations():
    assert jaxloss.LossEvolution is LossEvolution
    assert jaxloss.RandomSearch is RandomSearch
    pop = _genomes("x", "log(sigmoid(x)) * w", "y - x")
    for strategy in (_strategy(num_parents=3), _random(num_parents=3)):
        # the solution template is one genome: arrays [C] and [], the branch static
        template = strategy.solution
        assert isinstance(template, Population) and template.branch == BRANCH
        assert template.ops.shape == (CAPACITY,) and template.size.shape == ()
        assert strategy.num_dims == 3 * CAPACITY + 1
        state = strategy.init(jax.random.key(0), pop, jnp.array([-0.1, -0.2, -0.3]),
                              strategy.default_params)
        back = strategy.get_population(state)
        assert isinstance(back, Population) and back.branch == BRANCH
        assert _keys(back.numpy()) == _keys(pop)
        assert (np.asarray(back.ops) == pop.ops).all() and (np.asarray(back.size) == pop.size).all()
        kids, _ = strategy.ask(jax.random.key(1), state, strategy.default_params)
        assert isinstance(kids, Population) and kids.branch == BRANCH
        assert isinstance(kids.ops, jax.Array) and kids.ops.shape == (6, CAPACITY)
        assert kids.size.shape == (6,) and kids.ops.dtype == jnp.int32


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


def _random(num_parents, population_size=6, **kw):
    return RandomSearch(population_size=population_size, branch=BRANCH, capacity=CAPACITY,
                        num_parents=num_parents, **kw)


@pytest.mark.parametrize("make", [_strategy, _random], ids=["cse", "random"])
def test_tell_keeps_the_best_measured_distinct_genomes_of_parents_and_offspring(make):
    strategy = make(num_parents=3)
    params = strategy.default_params
    parents = _genomes("x", "x * y", "x + y")
    state = strategy.init(jax.random.key(0), parents, jnp.array([-0.5, jnp.inf, jnp.inf]), params)
    assert num_filled(state) == 1
    kids = _genomes("exp(x)", "x - y", "w * x", "sigmoid(x)", "x", "exp(x)")
    #               better   nan      +inf     -inf         parent  duplicate of kid 0
    fitness = jnp.array([-0.9, jnp.nan, jnp.inf, -jnp.inf, -0.5, -0.9])
    state, _ = strategy.tell(jax.random.key(1), kids, fitness, state, params)
    kept = strategy.get_population(state).numpy()
    fit = np.asarray(state.fitness)
    # two measured distinct genomes (exp(x) once, x once); the third slot stays empty
    assert num_filled(state) == 2
    assert _keys(kept)[:2] == [_genomes("exp(x)")[0].key, _genomes("x")[0].key]
    np.testing.assert_allclose(fit[:2], [-0.9, -0.5])
    assert np.isinf(fit[2]) and fit[2] > 0
    # NaN and -inf are no measurements: they never become the best either
    assert float(state.best_fitness) == pytest.approx(-0.9)


@pytest.mark.parametrize("make", [_strategy, _random], ids=["cse", "random"])
def test_tell_is_a_mu_plus_lambda_selection(make):
    strategy = make(num_parents=2, population_size=3)
    params = strategy.default_params
    state = strategy.init(jax.random.key(0), _genomes("x", "x * y"), jnp.array([-0.8, -0.7]),
                          params)
    # worse offspring do not replace better parents; a better one replaces the worst parent
    kids = _genomes("exp(x)", "w * x", "y - x")
    state, _ = strategy.tell(jax.random.key(1), kids, jnp.array([-0.1, -0.75, jnp.nan]), state,
                             params)
    kept = strategy.get_population(state).numpy()
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
    state = plain.init(jax.random.key(0), parents, fitness, plain.default_params)
    kids, _ = plain.ask(jax.random.key(1), state, plain.default_params)
    keys = _keys(kids.numpy())
    assert set(keys) == {parents[0].key}  # no variation: copies of the one measured parent

    strategy = _strategy(num_parents=4, population_size=n)  # the search's defaults
    state = strategy.init(jax.random.key(0), parents, fitness, strategy.default_params)
    kids, _ = strategy.ask(jax.random.key(1), state, strategy.default_params)
    keys = _keys(kids.numpy())
    assert parents[1].key not in keys  # never bred from an unmeasured slot
    # an offspring equal to its (already measured) parent is mutated again, up to 3 times
    assert sum(k == parents[0].key for k in keys) <= 0.01 * n
    assert len(set(keys)) > 0.5 * n


def test_initial_parents_hold_one_measured_genome():
    pop = _genomes(str(LIBRARY["FLI"]))
    parents, fitness = initial_parents(pop, -0.25, 5)
    assert isinstance(parents, Population) and parents.branch == BRANCH
    assert parents.ops.shape == (5, CAPACITY) and parents.size.shape == (5,)
    assert _keys(parents.numpy()) == _keys(pop) * 5
    np.testing.assert_array_equal(np.isfinite(np.asarray(fitness)), [True] + [False] * 4)
    assert float(fitness[0]) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="one genome"):
        initial_parents(_genomes("x", "y"), 0.0, 3)


def test_random_search_asks_fresh_random_valid_genomes_whatever_its_state():
    n = 200
    strategy = _random(num_parents=3, population_size=n)
    params = strategy.default_params
    parents = _genomes("x", "x * y", "x + y")
    state = strategy.init(jax.random.key(0), parents, jnp.array([-0.5, jnp.inf, jnp.inf]), params)
    key = jax.random.key(7)
    kids, same_state = strategy.ask(key, state, params)
    assert same_state is state
    # the sampler's genomes for a seed drawn from the key, padded to the capacity
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    expected = pad_capacity(jaxloss.sample(BRANCH, n, seed=seed, max_nodes=16), CAPACITY)
    kids = kids.numpy()
    for field in ("ops", "lhs", "rhs", "size"):
        np.testing.assert_array_equal(getattr(kids, field), getattr(expected, field))
    assert (validity_errors(kids) == 0).all() and kids.size.max() <= 16
    assert len(set(_keys(kids))) > 0.9 * n
    # the record of the best does not steer it: another state, the same genomes for the key
    told, _ = strategy.tell(jax.random.key(1), kids, jnp.linspace(-1, 0, n), state, params)
    again, _ = strategy.ask(key, told, params)
    np.testing.assert_array_equal(np.asarray(again.ops), kids.ops)
    other, _ = strategy.ask(jax.random.key(8), state, params)
    assert not np.array_equal(np.asarray(other.ops), kids.ops)
    # a capacity under 16 caps the node count
    small = RandomSearch(population_size=50, branch=BRANCH, capacity=5, num_parents=2)
    first = from_graphs([parse_graph("x", BRANCH, 5)] * 2, BRANCH, 5)
    state = small.init(jax.random.key(0), first, jnp.array([-0.1, jnp.inf]), small.default_params)
    kids, _ = small.ask(key, state, small.default_params)
    assert kids.ops.shape == (50, 5) and int(kids.size.max()) <= 5
    assert (validity_errors(kids.numpy()) == 0).all()


@pytest.mark.parametrize("p_crossover, p_mutation", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0),
                                                     (0.5, 0.3)])
def test_offspring_are_valid_and_vary_at_the_rates_asked(branch, p_crossover, p_mutation):
    parents = jaxloss.sample(branch, 100, seed=3, max_nodes=16)
    n = 2000
    mothers = np.arange(n) % 100
    fathers = (mothers + 37) % 100
    kids, flags = variation.vary(jax.random.key(5), parents.jax(), jnp.asarray(mothers),
                                 jnp.asarray(fathers), jnp.float32(p_crossover),
                                 jnp.float32(p_mutation))
    assert isinstance(kids, Population)
    kids, flags = kids.numpy(), np.asarray(flags)
    assert len(kids) == n and kids.capacity == 16 and kids.branch == branch
    assert (validity_errors(kids) == 0).all()
    crossed, mutated = flags[:, 0] == 1, flags[:, 1] >= 0
    # Bernoulli rates within 4 standard deviations
    for rate, p in ((crossed.mean(), p_crossover), (mutated.mean(), p_mutation)):
        assert abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9
    changed = np.array([kids[k].key != parents[int(mothers[k])].key for k in range(n)])
    assert not changed[~crossed & ~mutated].any()  # untouched offspring are exact copies
    if p_mutation == 1.0:
        assert changed.mean() > 0.9  # a mutation changes the loss (a few land on a copy)
        assert set(np.unique(flags[:, 1])) == set(range(len(variation.MUTATIONS)))
    if p_crossover == 1.0:
        assert changed.mean() > 0.75  # a donor subtree can equal the one it replaces


def _mutation_blocks(formula: str, n: int, seed: int = 0):
    genome = jax.tree.map(lambda a: a[0], _genomes(formula).jax())  # one genome: [C] and []
    blocks = jax.jit(jax.vmap(lambda k: variation._mutation_block(k, genome)))(
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

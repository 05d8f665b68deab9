"""Genomes, populations and the random sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import LIBRARY, parse
from jaxloss.genome.population import (empty_genome, from_graphs, from_losses, pad_capacity,
                                       validity_errors)
from jaxloss.space import ops
from jaxloss.space.branches import BRANCHES


@pytest.mark.parametrize("max_nodes, min_nodes", [(16, 16), (24, 3), (1, 1)])
def test_sample_gives_valid_genomes_of_the_requested_sizes(branch, max_nodes, min_nodes):
    pop = jaxloss.sample(branch, 300, seed=4, max_nodes=max_nodes, min_nodes=min_nodes)
    assert len(pop) == 300 and pop.capacity == max_nodes and pop.branch == branch
    assert (validity_errors(pop) == 0).all()
    assert pop.size.min() >= min_nodes and pop.size.max() <= max_nodes
    allowed = set(BRANCHES[branch].codes)
    for loss in pop.losses():
        assert {code for code, _, _ in loss.graph} <= allowed
    # no dead nodes: compacting a sampled genome keeps every node
    assert all(pop[k].size == pop.size[k] for k in range(len(pop)))


def test_sample_is_deterministic_and_seed_dependent():
    a = jaxloss.sample("cls", 50, seed=1)
    b = jaxloss.sample("cls", 50, seed=1)
    c = jaxloss.sample("cls", 50, seed=2)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("ops", "lhs", "rhs", "size"))
    assert not np.array_equal(a.ops, c.ops)


def test_sample_covers_every_operator_of_the_branch(branch):
    pop = jaxloss.sample(branch, 500, seed=0, max_nodes=16)
    used = set(np.unique(pop.ops).tolist())
    assert set(BRANCHES[branch].operators) <= used


def test_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_nodes"):
        jaxloss.sample("cls", 3, max_nodes=4, min_nodes=5)
    with pytest.raises(ValueError, match="unknown branch"):
        jaxloss.sample("det", 3)


def test_population_round_trip_through_graphs():
    losses = [LIBRARY[n] for n in ("IoU", "GIoU", "CSE-Autoloss-A_reg")]
    pop = from_graphs([l.graph for l in losses], "reg", 16)
    assert [pop[k] for k in range(3)] == losses
    assert [pop[k].graph for k in range(3)] == [l.graph for l in losses]
    wide = pad_capacity(pop, 24)
    assert wide.capacity == 24 and wide.losses() == losses
    with pytest.raises(ValueError, match="capacity"):
        from_graphs([LIBRARY["CSE-Autoloss-B_reg"].graph], "reg", 16)


def test_population_as_numpy_and_jax_arrays_and_one_genome():
    pop = from_losses([LIBRARY["IoU"], LIBRARY["GIoU"]], 12)
    on_device = pop.jax()
    assert all(isinstance(getattr(on_device, f), jax.Array) and getattr(on_device, f).dtype
               == jnp.int32 for f in ("ops", "lhs", "rhs", "size"))
    back = on_device.numpy()
    assert back.branch == "reg" and back.losses() == pop.losses()
    assert all(isinstance(getattr(back, f), np.ndarray) for f in ("ops", "lhs", "rhs", "size"))
    one = empty_genome(12, "reg")  # the per-genome form, as vmap sees it
    assert one.ops.shape == (12,) and one.size.shape == () and one.branch == "reg"
    assert jax.tree.structure(one) == jax.tree.structure(on_device)
    first = jax.tree.map(lambda a: a[0], on_device)
    assert jax.tree.structure(first) == jax.tree.structure(one)


def test_dead_nodes_and_duplicates_are_dropped_when_read_back():
    pop = from_losses([parse("exp(x) + exp(x)", "cls_binary")], 8).numpy()
    # insert a dead node and a duplicate exp(x) by hand: x, exp(x), sin(x) [dead], exp(x), add
    x, exp, sin, add = (ops.code(n) for n in ("x", "exp", "sin", "add"))
    pop.ops[0, :5] = [x, exp, sin, exp, add]
    pop.lhs[0, :5] = [0, 0, 0, 0, 1]
    pop.rhs[0, :5] = [0, 0, 0, 0, 3]
    pop.size[0] = 5
    assert validity_errors(pop).tolist() == [0]
    loss = pop[0]
    assert loss.size == 3 and str(loss) == "exp(x) + exp(x)"


def test_structural_hash_ignores_commutative_order_only():
    a = parse("dot(w*y, log(softmax(x)))", "cls")
    b = parse("dot(log(softmax(x)), y*w)", "cls")
    c = parse("dot(w*y, log(softmax(-x)))", "cls")
    assert a.key == b.key and a.key != c.key
    assert len({a, b, c}) == 2
    assert parse("x", "cls") != parse("x", "cls_binary")  # the branch is part of identity

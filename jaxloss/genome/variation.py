"""Mutation and crossover on integer genomes: batched, jitted, always producing valid genomes.

Every variation is one primitive, the *graft*: insert a small block of new nodes T right after node
i, then make every later node that read node i read T's last node (its root) instead. Node i stays
and becomes dead unless T reads it. On a genome of one candidate (see :mod:`jaxloss.genome.population`):

=====================  ========================================================================
variation              T (placed after node i)
=====================  ========================================================================
operator replacement   one node: another operator of the same arity on node i's operands
subtree replacement    a fresh random subtree: a leaf, op(leaf), or op(leaf, leaf)
node insertion         unary(i), or binary(i, leaf) / binary(leaf, i) with a fresh leaf
node deletion          a copy of one of node i's operands (node i is bypassed)
input / constant swap  (node i a leaf) another leaf of the branch
crossover              the other parent's nodes up to a random node j (its subtree rooted at j)
=====================  ========================================================================

The grafted genome lives in a buffer of twice the capacity and is then *compacted*: dead nodes are
dropped and the rest renumbered in order. A result that still needs more than ``capacity`` nodes is
discarded and the parent is kept, so offspring are always valid genomes of the branch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxloss.genome.population import ARITY, Population
from jaxloss.space import branches, ops

MUTATIONS = ("operator", "subtree", "insert", "delete", "leaf_swap")
MAX_GRAFT = 3  # nodes of T for mutations


def _branch_tables(branch_name: str):
    spec = branches.get(branch_name)
    return (jnp.asarray(spec.leaves, jnp.int32), jnp.asarray(spec.unary, jnp.int32),
            jnp.asarray(spec.binary, jnp.int32), jnp.asarray(ARITY))


def _choice(key, options):
    return options[jax.random.randint(key, (), 0, options.shape[0])]


def graft(genome, i, t_ops, t_lhs, t_rhs, t_len):
    """Insert T after node i and redirect later readers of node i to T's last node.

    Args:
      genome: (ops, lhs, rhs) int32 [C] and size, scalar int32.
      i: scalar node index < size.
      t_ops, t_lhs, t_rhs: int32 [T] block (only the first ``t_len`` used), operands already in
        final positions: an existing node ≤ i, or i + 1 + l for an earlier node l of T.
      t_len: scalar number of nodes in T (≥ 1).

    Returns:
      (ops, lhs, rhs) int32 [C + T] and the new size.
    """
    (o, a, b), size = genome
    cap = o.shape[0]
    width = cap + t_ops.shape[0]
    s = jnp.arange(width)
    root = i + t_len
    old = jnp.clip(s - t_len, 0, cap - 1)  # source of positions after T

    def shift(r):
        return jnp.where(r == i, root, jnp.where(r > i, r + t_len, r))

    in_t = (s > i) & (s <= i + t_len)
    t_idx = jnp.clip(s - i - 1, 0, t_ops.shape[0] - 1)
    before = s <= i
    pad = lambda x: jnp.pad(x, (0, width - cap))  # noqa: E731
    new_o = jnp.where(before, pad(o), jnp.where(in_t, t_ops[t_idx], o[old]))
    arity = jnp.asarray(ARITY)[new_o]
    new_a = jnp.where(before, pad(a), jnp.where(in_t, t_lhs[t_idx], shift(a[old])))
    new_b = jnp.where(before, pad(b), jnp.where(in_t, t_rhs[t_idx], shift(b[old])))
    new_size = size + t_len
    valid = s < new_size
    new_o = jnp.where(valid, new_o, 0)
    new_a = jnp.where(valid & (arity >= 1), new_a, 0)
    new_b = jnp.where(valid & (arity == 2), new_b, 0)
    return (new_o, new_a, new_b), new_size


def compact(genome, capacity: int):
    """Drop dead nodes and renumber; returns ((ops, lhs, rhs) [capacity], size, fits)."""
    (o, a, b), size = genome
    width = o.shape[0]
    arity = jnp.asarray(ARITY)[o]

    def mark(k, live):
        s = width - 1 - k
        alive = live[s] & (s < size)
        live = live.at[a[s]].set(live[a[s]] | (alive & (arity[s] >= 1)))
        return live.at[b[s]].set(live[b[s]] | (alive & (arity[s] == 2)))

    live = jnp.zeros(width, bool).at[size - 1].set(True)
    live = lax.fori_loop(0, width, mark, live)
    new_index = jnp.cumsum(live) - 1
    n = jnp.sum(live)
    target = jnp.where(live, new_index, capacity)  # dead: dropped
    out = []
    for field, need in ((o, 0), (a, 1), (b, 2)):
        value = field if need == 0 else jnp.where(arity >= need, new_index[field], 0)
        out.append(jnp.zeros(capacity, jnp.int32).at[target].set(value, mode="drop"))
    return tuple(out), n.astype(jnp.int32), n <= capacity


def _other_leaf(key, leaves, exclude):
    """A uniformly random leaf code other than ``exclude``."""
    pick = leaves[jax.random.randint(key, (), 0, leaves.shape[0] - 1)]
    return jnp.where(pick == exclude, leaves[leaves.shape[0] - 1], pick)


def _other(key, options, exclude):
    """A uniformly random entry of ``options`` other than ``exclude`` (if it is one of them)."""
    pick = options[jax.random.randint(key, (), 0, options.shape[0] - 1)]
    return jnp.where(pick == exclude, options[options.shape[0] - 1], pick)


def _mutation_block(key, genome, branch_name: str):
    """Choose a mutation and build its (i, T); returns (i, t_ops, t_lhs, t_rhs, t_len, kind)."""
    leaves, unary, binary, arity_table = _branch_tables(branch_name)
    (o, a, b), size = genome
    # one key per draw: draws that share a key are correlated (randint of the same bits gives
    # e.g. shape == leaf index % 3, leaving two thirds of the subtree shapes unreachable)
    (k_node, k_kind, k_leaf, k_other_leaf, k_unary, k_binary, k_op_bin, k_op_un, k_leaf2,
     k_shape, k_how, k_operand) = jax.random.split(key, 12)
    arity = arity_table[o]
    i = jax.random.randint(k_node, (), 0, size)
    has_op = jnp.any((arity > 0) & (jnp.arange(o.shape[0]) < size))
    kind = jax.random.randint(k_kind, (), 0, len(MUTATIONS))
    # operator replacement and deletion need an operator node; leaf swap needs a leaf node
    kind = jnp.where((kind == 0) | (kind == 3), jnp.where(has_op, kind, 2), kind)
    # move i onto a node of the right type: the nearest operator (or leaf) at or before i, or
    # else the first one
    positions = jnp.arange(o.shape[0])
    want_op = (kind == 0) | (kind == 3)
    want_leaf = kind == 4
    ok = jnp.where(want_op, arity > 0, jnp.where(want_leaf, arity == 0, True)) & (positions < size)
    i = jnp.where(ok[i], i, jnp.max(jnp.where(ok & (positions <= i), positions, -1)))
    i = jnp.where(i < 0, jnp.argmax(ok), i)
    fresh_leaf = _choice(k_leaf, leaves)
    other_leaf = _other_leaf(k_other_leaf, leaves, o[i])
    un = _choice(k_unary, unary)
    bi = _choice(k_binary, binary)
    zero = jnp.int32(0)

    def block(*nodes):
        """T from up to MAX_GRAFT (op, lhs, rhs) nodes."""
        ops_ = jnp.stack([n[0] for n in nodes] + [zero] * (MAX_GRAFT - len(nodes)))
        lhs_ = jnp.stack([n[1] for n in nodes] + [zero] * (MAX_GRAFT - len(nodes)))
        rhs_ = jnp.stack([n[2] for n in nodes] + [zero] * (MAX_GRAFT - len(nodes)))
        return ops_, lhs_, rhs_, jnp.int32(len(nodes))

    # operator replacement: another operator of the same arity
    new_op = jnp.where(arity[i] == 2, _other(k_op_bin, binary, o[i]),
                       _other(k_op_un, unary, o[i]))
    op_replace = block((new_op, a[i], jnp.where(arity[i] == 2, b[i], zero)))
    # subtree replacement: leaf | unary(leaf) | binary(leaf, leaf2)
    leaf2 = _choice(k_leaf2, leaves)
    shape = jax.random.randint(k_shape, (), 0, 3)
    sub_leaf = block((fresh_leaf, zero, zero))
    sub_unary = block((fresh_leaf, zero, zero), (un, i + 1, zero))
    sub_binary = block((fresh_leaf, zero, zero), (leaf2, zero, zero), (bi, i + 1, i + 2))
    # node insertion: unary(i) | binary(i, leaf) | binary(leaf, i)
    how = jax.random.randint(k_how, (), 0, 3)
    ins_unary = block((un, i, zero))
    ins_right = block((fresh_leaf, zero, zero), (bi, i, i + 1))
    ins_left = block((fresh_leaf, zero, zero), (bi, i + 1, i))
    # deletion: a copy of one operand
    pick_b = (arity[i] == 2) & jax.random.bernoulli(k_operand)
    operand = jnp.where(pick_b, b[i], a[i])
    delete = block((o[operand], a[operand], b[operand]))
    # leaf swap
    swap = block((other_leaf, zero, zero))

    candidates = [op_replace,
                  _select(shape, [sub_leaf, sub_unary, sub_binary]),
                  _select(how, [ins_unary, ins_right, ins_left]),
                  delete, swap]
    t_ops, t_lhs, t_rhs, t_len = _select(kind, candidates)
    return i, t_ops, t_lhs, t_rhs, t_len, kind


def _select(index, options):
    """options[index] for a list of equally shaped pytrees (a select, no control flow)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs)[index], *options)


def mutate_one(key, genome, *, branch_name: str, capacity: int):
    """One random mutation of one genome; the parent itself if the result does not fit."""
    i, t_ops, t_lhs, t_rhs, t_len, kind = _mutation_block(key, genome, branch_name)
    grafted = graft(genome, i, t_ops, t_lhs, t_rhs, t_len)
    child, size, fits = compact(grafted, capacity)
    (o, a, b), parent_size = genome
    keep = ~fits
    child = tuple(jnp.where(keep, p, c) for p, c in zip((o, a, b), child))
    return (child, jnp.where(keep, parent_size, size)), kind


def crossover_one(key, genome, donor, *, capacity: int):
    """Graft the donor's subtree rooted at a random node j in place of a random node i."""
    (o, a, b), size = genome
    (do, da, db), dsize = donor
    k1, k2 = jax.random.split(key)
    i = jax.random.randint(k1, (), 0, size)
    j = jax.random.randint(k2, (), 0, dsize)
    arity = jnp.asarray(ARITY)[do]
    t_len = j + 1
    offset = i + 1
    t_ops = jnp.where(jnp.arange(do.shape[0]) <= j, do, 0)
    t_lhs = jnp.where(arity >= 1, da + offset, 0)
    t_rhs = jnp.where(arity == 2, db + offset, 0)
    grafted = graft(genome, i, t_ops, t_lhs, t_rhs, t_len)
    child, csize, fits = compact(grafted, capacity)
    child = tuple(jnp.where(fits, c, p) for p, c in zip((o, a, b), child))
    return child, jnp.where(fits, csize, size)


def _as_genomes(pop: Population):
    return (jnp.asarray(pop.ops), jnp.asarray(pop.lhs), jnp.asarray(pop.rhs)), jnp.asarray(pop.size)


def _same(genomes, others):
    """bool [N]: genome k equals others k, node for node."""
    ((o, a, b), size), ((po, pa, pb), psize) = genomes, others
    return (jnp.all(o == po, axis=1) & jnp.all(a == pa, axis=1) & jnp.all(b == pb, axis=1)
            & (size == psize))


@functools.partial(jax.jit, static_argnames=("branch_name", "refresh_tries"))
def vary(key, parents, mothers, fathers, p_crossover, p_mutation, *, branch_name: str,
         refresh_tries: int = 0):
    """Offspring of selected parent pairs: crossover with probability ``p_crossover``, then a
    mutation with probability ``p_mutation``; then an offspring identical to its mother or its
    father (which were evaluated already) is mutated again, up to ``refresh_tries`` times.

    Args:
      key: PRNG key.
      parents: ((ops, lhs, rhs) [P, C], size [P]) parent genomes.
      mothers, fathers: int32 [N] parent indices of each offspring (the father is the donor).
      p_crossover, p_mutation: probabilities (scalars, may be traced).

    Returns:
      ((ops, lhs, rhs) [N, C], size [N]) offspring, and int32 [N, 3] flags (crossed, mutation
      kind or -1, extra mutations made because the offspring equalled a parent).
    """
    (o, a, b), size = parents
    capacity = o.shape[1]
    n = mothers.shape[0]
    keys = jax.random.split(key, 4 + refresh_tries)
    take = lambda idx: ((o[idx], a[idx], b[idx]), size[idx])  # noqa: E731
    mother, father = take(mothers), take(fathers)
    cross = jax.random.bernoulli(keys[0], p_crossover, (n,))
    crossed = jax.vmap(functools.partial(crossover_one, capacity=capacity))(
        jax.random.split(keys[1], n), mother, father)
    child = jax.tree.map(lambda c, m: jnp.where(cross.reshape((n,) + (1,) * (c.ndim - 1)), c, m),
                         crossed, mother)
    mutate = jax.random.bernoulli(keys[2], p_mutation, (n,))
    mutated, kind = jax.vmap(functools.partial(mutate_one, branch_name=branch_name,
                                               capacity=capacity))(
        jax.random.split(keys[3], n), child)
    child = jax.tree.map(lambda c, m: jnp.where(mutate.reshape((n,) + (1,) * (c.ndim - 1)), c, m),
                         mutated, child)
    refreshed = jnp.zeros(n, jnp.int32)
    for t in range(refresh_tries):
        stale = _same(child, mother) | _same(child, father)
        again, _ = jax.vmap(functools.partial(mutate_one, branch_name=branch_name,
                                              capacity=capacity))(
            jax.random.split(keys[4 + t], n), child)
        child = jax.tree.map(
            lambda c, m: jnp.where(stale.reshape((n,) + (1,) * (c.ndim - 1)), c, m), again, child)
        refreshed = refreshed + stale
    flags = jnp.stack([cross.astype(jnp.int32), jnp.where(mutate, kind, -1), refreshed], 1)
    return child, flags


def offspring(key, parents: Population, mothers, fathers, *, p_crossover: float,
              p_mutation: float, refresh_tries: int = 0) -> tuple[Population, np.ndarray]:
    """:func:`vary` on a :class:`Population`; returns the offspring population and the flags."""
    ((o, a, b), size), flags = vary(
        key, _as_genomes(parents), jnp.asarray(mothers), jnp.asarray(fathers),
        jnp.float32(p_crossover), jnp.float32(p_mutation), branch_name=parents.branch,
        refresh_tries=refresh_tries)
    return Population(np.asarray(o), np.asarray(a), np.asarray(b), np.asarray(size),
                      parents.branch), np.asarray(flags)


def tournament(key, fitness, n: int, size: int = 3):
    """Indices [n] of tournament winners: the lowest fitness among ``size`` entries drawn
    uniformly, with replacement, from the entries whose fitness is finite (measured).

    Args:
      key: PRNG key.
      fitness: float [P], lower is better; NaN and ±inf mark entries that are never drawn.
      n: number of tournaments.
      size: entries per tournament.

    Returns:
      int32 [n] indices into ``fitness``, each with a finite fitness. With no finite entry at all
      the result is meaningless (index 0): callers check that one exists
      (:func:`jaxloss.evolution.cse.num_filled`).
    """
    finite = jnp.isfinite(fitness)
    count = jnp.maximum(jnp.sum(finite), 1)
    measured_first = jnp.argsort(~finite, stable=True)  # finite entries first, in index order
    entries = measured_first[jax.random.randint(key, (n, size), 0, count)]
    return entries[jnp.arange(n), jnp.argmin(fitness[entries], axis=1)]

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

Genomes are :class:`~jaxloss.genome.population.Population` pytrees: :func:`vary` takes a batch
(arrays [P, C] and [P]); :func:`graft`, :func:`compact_genome`, :func:`mutate_one` and
:func:`crossover_one` take one genome as a function vmapped over a batch sees it (arrays [C] and
[]). The branch is the Population's static ``branch``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss.genome.population import ARITY, Population
from jaxloss.space import branches

MUTATIONS = ("operator", "subtree", "insert", "delete", "leaf_swap")
MAX_GRAFT = 3  # nodes of T for mutations


def _branch_tables(branch_name: str):
    spec = branches.get(branch_name)
    return (jnp.asarray(spec.leaves, jnp.int32), jnp.asarray(spec.unary, jnp.int32),
            jnp.asarray(spec.binary, jnp.int32), jnp.asarray(ARITY))


def _choice(key, options):
    return options[jax.random.randint(key, (), 0, options.shape[0])]


def graft(genome: Population, i, t_ops, t_lhs, t_rhs, t_len) -> Population:
    """Insert T after node i and redirect later readers of node i to T's last node.

    Args:
      genome: one genome: ops, lhs, rhs int32 [C], size int32 [].
      i: scalar node index < size.
      t_ops, t_lhs, t_rhs: int32 [T] block (only the first ``t_len`` used), operands already in
        final positions: an existing node ≤ i, or i + 1 + l for an earlier node l of T.
      t_len: scalar number of nodes in T (≥ 1).

    Returns:
      The genome with ops, lhs, rhs int32 [C + T] and the new size.
    """
    o, a, b, size = genome.ops, genome.lhs, genome.rhs, genome.size
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
    return Population(new_o, new_a, new_b, new_size, genome.branch)


def compact_genome(genome: Population, capacity: int) -> tuple[Population, jax.Array]:
    """Drop dead nodes and renumber (the traced counterpart of :func:`jaxloss.space.graph.compact`).

    Args:
      genome: one genome of any width W (ops, lhs, rhs [W], size []).
      capacity: the width of the result.

    Returns:
      (the genome with arrays [capacity], fits: bool [], whether its live nodes fit in
      ``capacity``; when they do not, the result is meaningless).
    """
    o, a, b, size = genome.ops, genome.lhs, genome.rhs, genome.size
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
    return Population(*out, n.astype(jnp.int32), genome.branch), n <= capacity


def _other_leaf(key, leaves, exclude):
    """A uniformly random leaf code other than ``exclude``."""
    pick = leaves[jax.random.randint(key, (), 0, leaves.shape[0] - 1)]
    return jnp.where(pick == exclude, leaves[leaves.shape[0] - 1], pick)


def _other(key, options, exclude):
    """A uniformly random entry of ``options`` other than ``exclude`` (if it is one of them)."""
    pick = options[jax.random.randint(key, (), 0, options.shape[0] - 1)]
    return jnp.where(pick == exclude, options[options.shape[0] - 1], pick)


def _mutation_block(key, genome: Population):
    """Choose a mutation of one genome and build its (i, T); returns (i, t_ops, t_lhs, t_rhs,
    t_len, kind)."""
    leaves, unary, binary, arity_table = _branch_tables(genome.branch)
    o, a, b, size = genome.ops, genome.lhs, genome.rhs, genome.size
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


def mutate_one(key, genome: Population) -> tuple[Population, jax.Array]:
    """One random mutation of one genome; the parent itself if the result does not fit.

    Returns (the child, of the parent's capacity; the mutation's kind, an index of MUTATIONS).
    """
    i, t_ops, t_lhs, t_rhs, t_len, kind = _mutation_block(key, genome)
    grafted = graft(genome, i, t_ops, t_lhs, t_rhs, t_len)
    child, fits = compact_genome(grafted, genome.capacity)
    return _where(fits, child, genome), kind


def crossover_one(key, genome: Population, donor: Population) -> Population:
    """Graft the donor's subtree rooted at a random node j in place of a random node i of one
    genome; the genome itself if the result does not fit its capacity."""
    size = genome.size
    do, da, db, dsize = donor.ops, donor.lhs, donor.rhs, donor.size
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
    child, fits = compact_genome(grafted, genome.capacity)
    return _where(fits, child, genome)


def _where(condition, yes: Population, no: Population) -> Population:
    """``yes`` where ``condition`` [N] (or []) holds, else ``no``, genome by genome."""
    def pick(y, n):
        return jnp.where(condition.reshape(condition.shape + (1,) * (y.ndim - condition.ndim)),
                         y, n)

    return jax.tree.map(pick, yes, no)


def _same(genomes: Population, others: Population):
    """bool [N]: genome k equals others k, node for node."""
    return (jnp.all(genomes.ops == others.ops, axis=1) & jnp.all(genomes.lhs == others.lhs, axis=1)
            & jnp.all(genomes.rhs == others.rhs, axis=1) & (genomes.size == others.size))


@functools.partial(jax.jit, static_argnames=("refresh_tries",))
def vary(key, parents: Population, mothers, fathers, p_crossover, p_mutation, *,
         refresh_tries: int = 0) -> tuple[Population, jax.Array]:
    """Offspring of selected parent pairs: crossover with probability ``p_crossover``, then a
    mutation with probability ``p_mutation``; then an offspring identical to its mother or its
    father (which were evaluated already) is mutated again, up to ``refresh_tries`` times.

    Args:
      key: PRNG key.
      parents: the parent genomes, a Population (ops, lhs, rhs [P, C], size [P]; JAX or NumPy
        arrays) of the branch to vary in.
      mothers, fathers: int32 [N] parent indices of each offspring (the father is the donor).
      p_crossover, p_mutation: probabilities (scalars, may be traced).

    Returns:
      (the offspring, a Population of JAX arrays [N, C] and [N] of the parents' branch; int32
      [N, 3] flags: crossed, mutation kind (an index of MUTATIONS) or -1, extra mutations made
      because the offspring equalled a parent).
    """
    n = mothers.shape[0]
    keys = jax.random.split(key, 4 + refresh_tries)
    mother = jax.tree.map(lambda x: x[mothers], parents)
    father = jax.tree.map(lambda x: x[fathers], parents)
    cross = jax.random.bernoulli(keys[0], p_crossover, (n,))
    crossed = jax.vmap(crossover_one)(jax.random.split(keys[1], n), mother, father)
    child = _where(cross, crossed, mother)
    mutate = jax.random.bernoulli(keys[2], p_mutation, (n,))
    mutated, kind = jax.vmap(mutate_one)(jax.random.split(keys[3], n), child)
    child = _where(mutate, mutated, child)
    refreshed = jnp.zeros(n, jnp.int32)
    for t in range(refresh_tries):
        stale = _same(child, mother) | _same(child, father)
        again, _ = jax.vmap(mutate_one)(jax.random.split(keys[4 + t], n), child)
        child = _where(stale, again, child)
        refreshed = refreshed + stale
    flags = jnp.stack([cross.astype(jnp.int32), jnp.where(mutate, kind, -1), refreshed], 1)
    return child, flags


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

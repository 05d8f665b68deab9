"""Random valid genomes: for random search, tests and benchmarks."""

from __future__ import annotations

import random

from jaxloss.genome.population import Population, from_graphs
from jaxloss.space import branches
from jaxloss.space.graph import GraphBuilder, Node

SHARE_PROBABILITY = 0.15
"""Chance that an operand reuses an already-consumed node (a shared subexpression) when the node
budget allows it; otherwise operands are drawn from the nodes nobody uses yet."""


def random_graph(rnd: random.Random, branch: branches.Branch, n_nodes: int) -> tuple[Node, ...]:
    """One random graph with exactly ``n_nodes`` nodes, all of which the output depends on.

    Leaves are distinct inputs/constants; operators are uniform over the branch's operator set; a
    node that would duplicate an existing one (same operator and operands) is redrawn.
    """
    leaves_cap = min(len(branch.leaves), (n_nodes + 1) // 2)
    while True:
        graph = _try_random_graph(rnd, branch, n_nodes, 1 + _below(rnd, leaves_cap))
        if graph is not None:
            return graph


def _below(rnd: random.Random, n: int) -> int:
    """A uniform integer in [0, n) from one ``random()`` draw (stable across Python versions)."""
    return min(int(rnd.random() * n), n - 1)


def _pick(rnd: random.Random, items):
    return items[_below(rnd, len(items))]


def _try_random_graph(rnd, branch, n_nodes, n_leaves):
    builder = GraphBuilder()
    leaves = list(branch.leaves)
    for k in range(n_leaves):  # partial Fisher-Yates: n_leaves distinct leaves
        j = k + _below(rnd, len(leaves) - k)
        leaves[k], leaves[j] = leaves[j], leaves[k]
    pending = [builder.add(code) for code in leaves[:n_leaves]]  # nodes no operator uses yet
    for step in range(n_nodes - n_leaves):
        steps_left = n_nodes - n_leaves - step  # including this one
        for _attempt in range(20):
            code, args = _random_operator_node(rnd, branch, len(builder.nodes), pending, steps_left)
            before = len(builder.nodes)
            index = builder.add(code, *args)
            if len(builder.nodes) > before:  # not a duplicate of an existing node
                break
        else:
            return None
        pending = [p for p in pending if p not in args] + [index]
    return tuple(builder.nodes)


def _random_operator_node(rnd, branch, n_existing, pending, steps_left):
    """Draw an operator and its operands so that the graph stays completable.

    A move that retires c pending nodes leaves p' = p + 1 - c of them; the graph can still end with
    exactly one unused node (its output) after the remaining steps only if p' <= steps_left. Since
    p <= steps_left + 1 holds before every step, merging two pending nodes is always possible when
    nothing else is.
    """
    p = len(pending)
    shared_ok = n_existing > p  # some node is already used and may be used again
    w_unary = len(branch.unary) / len(branch.operators)
    moves = (  # (move, weight, pending nodes left afterwards)
        ("unary", w_unary * (1 - SHARE_PROBABILITY), p),
        ("unary_shared", w_unary * SHARE_PROBABILITY * shared_ok, p + 1),
        ("merge", (1 - w_unary) * (1 - SHARE_PROBABILITY) * (p >= 2), p - 1),
        ("binary_shared", (1 - w_unary) * SHARE_PROBABILITY * shared_ok, p),
    )
    allowed = [(m, w) for m, w, left in moves if w > 0 and left <= steps_left]
    r = rnd.random() * sum(w for _, w in allowed)
    move = allowed[-1][0]
    for m, w in allowed:
        if r < w:
            move = m
            break
        r -= w
    pending_set = set(pending)
    used = [k for k in range(n_existing) if k not in pending_set] if shared_ok else []
    if move == "unary":
        return _pick(rnd, branch.unary), (_pick(rnd, pending),)
    if move == "unary_shared":
        return _pick(rnd, branch.unary), (_pick(rnd, used),)
    if move == "merge":
        i = _below(rnd, p)
        j = (i + 1 + _below(rnd, p - 1)) % p
        a, b = pending[i], pending[j]
    else:
        a, b = _pick(rnd, pending), _pick(rnd, used)
        if rnd.random() < 0.5:
            a, b = b, a
    return _pick(rnd, branch.binary), (a, b)


def sample(branch: str, n: int, seed: int = 0, max_nodes: int = 16,
           min_nodes: int | None = None) -> Population:
    """``n`` random valid genomes of a branch.

    Args:
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``.
      n: number of genomes.
      seed: the only source of randomness (same seed → same population).
      max_nodes: largest node count, also the population's capacity.
      min_nodes: smallest node count (default 3); node counts are uniform in
        [min_nodes, max_nodes]. ``min_nodes=max_nodes`` gives genomes of exactly that size.

    Returns:
      A :class:`Population` with ``capacity == max_nodes``; every node of every genome is used by
      its output (no dead nodes).
    """
    spec = branches.get(branch)
    min_nodes = 3 if min_nodes is None else min_nodes
    if not 1 <= min_nodes <= max_nodes:
        raise ValueError(f"need 1 <= min_nodes <= max_nodes, got {min_nodes} and {max_nodes}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rnd = random.Random(seed)
    graphs = [random_graph(rnd, spec, min_nodes + _below(rnd, max_nodes - min_nodes + 1))
              for _ in range(n)]
    return from_graphs(graphs, spec.name, max_nodes)

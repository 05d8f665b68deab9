"""Loss graphs on the host: a compact, topologically ordered node list with shared subexpressions.

A graph is a tuple of nodes ``(code, lhs, rhs)``: ``code`` is an opcode of :mod:`jaxloss.space.ops`,
``lhs``/``rhs`` index earlier nodes (0 where unused: leaves use neither, unary nodes no ``rhs``). The
last node is the output. Identical subexpressions are stored once (hash-consing), so a graph is a
DAG and its node count is what the genome capacity bounds.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from jaxloss.space import ops

Node = tuple[int, int, int]


class GraphBuilder:
    """Builds a graph node by node, storing each distinct subexpression once.

    ``add(code, *operands)`` returns the node's index; adding a node that already exists (same code,
    same operand indices) returns the existing index.
    """

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._index: dict[Node, int] = {}

    def add(self, code: int, *operands: int) -> int:
        spec = ops.OPS[code]
        if len(operands) != spec.arity:
            raise ValueError(f"{spec.name} takes {spec.arity} operands, got {len(operands)}")
        node = (code, operands[0] if spec.arity >= 1 else 0, operands[1] if spec.arity == 2 else 0)
        found = self._index.get(node)
        if found is not None:
            return found
        self.nodes.append(node)
        self._index[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def graph(self, output: int) -> tuple[Node, ...]:
        """The compact graph of everything ``output`` depends on, with ``output`` last."""
        return compact(self.nodes, output)


def integer_factor(n: int) -> int | None:
    """How a whole number n > 3 is built from the constants 1, 2, 3: ``n = factor * (n // factor)``
    for the returned factor (3, else 2), or ``(n - 1) + 1`` when None. The parser builds numbers this
    way and the printer folds such subtrees back into the number."""
    for factor in (3, 2):
        if n % factor == 0:
            return factor
    return None


def integer(builder: "GraphBuilder", n: int) -> int:
    """Add the whole number ``n`` >= 1 built from the constants 1, 2, 3; returns its node index."""
    if n <= 3:
        return builder.add(ops.code(str(n)))
    factor = integer_factor(n)
    if factor is not None:
        return builder.add(ops.code("mul"), integer(builder, factor), integer(builder, n // factor))
    return builder.add(ops.code("add"), integer(builder, n - 1), integer(builder, 1))


def integer_literals(graph: Sequence[Node]) -> list[int | None]:
    """For each node, the whole number it spells if it is exactly :func:`integer`'s construction."""
    lit: list[int | None] = []
    for code, lhs, rhs in graph:
        name = ops.OPS[code].name
        value = None
        if name in ("1", "2", "3"):
            value = int(name)
        elif name == "mul" and lit[lhs] in (2, 3) and lit[rhs] is not None:
            n = lit[lhs] * lit[rhs]
            value = n if n > 3 and integer_factor(n) == lit[lhs] else None
        elif name == "add" and lit[rhs] == 1 and lit[lhs] is not None:
            n = lit[lhs] + 1
            value = n if n > 3 and integer_factor(n) is None else None
        lit.append(value)
    return lit


def operands(node: Node) -> tuple[int, ...]:
    """The operand indices a node actually uses."""
    code, lhs, rhs = node
    return (lhs, rhs)[: ops.OPS[code].arity]


def compact(nodes: Sequence[Node], output: int) -> tuple[Node, ...]:
    """The graph of everything ``output`` depends on, in a canonical node order.

    Nodes are renumbered in depth-first post-order from the output (first operand first), dead
    nodes dropped and duplicates merged. Two node lists that spell the same expression (operands in
    the same order) therefore give the very same tuple, whatever order their nodes were in.

    Args:
      nodes: node list in topological order (operands before users).
      output: index of the output node.
    """
    builder = GraphBuilder()
    new_index: dict[int, int] = {}
    stack = [(output, False)]
    while stack:
        k, expanded = stack.pop()
        if k in new_index:
            continue
        args = operands(nodes[k])
        if expanded:
            new_index[k] = builder.add(nodes[k][0], *(new_index[j] for j in args))
        else:
            stack.append((k, True))
            stack.extend((j, False) for j in reversed(args))
    return tuple(builder.nodes)


def digests(graph: Sequence[Node]) -> list[bytes]:
    """Structural digest of every node: equal digests ⇔ equal expressions up to commutative order.

    A Merkle hash: the digest of a node hashes its operator name and its operands' digests, sorted
    for commutative operators (so ``a + b`` and ``b + a`` agree). Linear in the node count, also
    for DAGs whose expanded tree would be exponentially large.
    """
    out: list[bytes] = []
    for code, lhs, rhs in graph:
        spec = ops.OPS[code]
        children = [out[j] for j in (lhs, rhs)[: spec.arity]]
        if spec.commutative:
            children.sort()
        h = hashlib.blake2b(spec.name.encode(), digest_size=16)
        for c in children:
            h.update(b"|")
            h.update(c)
        out.append(h.digest())
    return out


def structural_hash(graph: Sequence[Node]) -> str:
    """Hex structural hash of a graph's output (32 hex digits); see :func:`digests`."""
    return digests(graph)[-1].hex()


def canonical(graph: Sequence[Node]) -> tuple[Node, ...]:
    """The canonical graph: commutative operands ordered by digest, duplicates merged.

    Two graphs have the same canonical graph exactly when they have the same structural hash.
    """
    d = digests(graph)
    builder = GraphBuilder()
    new_index: list[int] = []
    for k, (code, lhs, rhs) in enumerate(graph):
        args = list(operands((code, lhs, rhs)))
        if ops.OPS[code].commutative:
            args.sort(key=lambda j: d[j])
        new_index.append(builder.add(code, *(new_index[j] for j in args)))
    return builder.graph(new_index[-1])


def depth(graph: Sequence[Node]) -> int:
    """Number of operator levels between the leaves and the output (0 for a single leaf)."""
    levels: list[int] = []
    for node in graph:
        args = operands(node)
        levels.append(1 + max(levels[j] for j in args) if args else 0)
    return levels[-1]


PLACEHOLDER = ops.code("1")
"""Opcode of the leaf that stands for one tuned constant in an unshared graph."""


def unshare_constants(graph: Sequence[Node]) -> tuple[tuple[Node, ...], tuple[int, ...],
                                                         tuple[float, ...]]:
    """The graph with every use of a whole number by a non-constant node as its own leaf.

    Returns (nodes, slots, start): ``nodes`` in topological order, output last, with the whole
    numbers that nothing but other whole numbers read left out; ``slots`` the indices of the leaves
    that stand for tunable constants (each a ``1`` leaf, whatever number it stands for); ``start``
    their whole-number values. A graph with no whole number gives ``slots == ()``.
    """
    literals = integer_literals(graph)
    if not any(ops.OPS[code].arity == 0 and code not in ops.CONSTANTS for code, _, _ in graph):
        raise ValueError("the loss reads no input (it is a constant); it has nothing to tune")
    nodes: list[Node] = []
    where: dict[int, int] = {}
    slots: list[int] = []
    start: list[float] = []
    for index, node in enumerate(graph):
        if literals[index] is not None:
            continue
        new_operands = []
        for operand in operands(node):
            if literals[operand] is not None:
                slots.append(len(nodes))
                start.append(float(literals[operand]))
                nodes.append((PLACEHOLDER, 0, 0))
                new_operands.append(slots[-1])
            else:
                new_operands.append(where[operand])
        code = node[0]
        lhs, rhs = (new_operands + [0, 0])[:2]
        where[index] = len(nodes)
        nodes.append((code, lhs, rhs))
    return tuple(nodes), tuple(slots), tuple(start)

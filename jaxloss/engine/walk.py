"""One loss graph walked node by node in one array library: the loop shared by the evaluators of a
single loss (the NumPy oracle :mod:`jaxloss.engine.reference`, a tuned structure's JAX function in
:mod:`jaxloss.evolution.tune`, and ``bridge.to_torch``'s module). The batched engine does not walk graphs.
"""

from __future__ import annotations

from typing import Callable, Sequence

from jaxloss.space import ops
from jaxloss.space.graph import Node


def walk(graph: Sequence[Node], leaf: Callable[[int, int], object], namespace,
         cast: Callable | None = None):
    """The value of the graph's output node (the last), computed with the operator table.

    Args:
      graph: nodes ``(code, lhs, rhs)`` in topological order.
      leaf: ``leaf(index, code)`` → the value of the leaf node at ``index`` with opcode ``code``
        (an input, a constant 1, 2, 3, or whatever the caller puts there, e.g. a tuned constant).
      namespace: the array functions the operators use (``jaxloss.engine.namespaces.NUMPY`` / ``JAX``,
        ``bridge.namespace.TORCH``).
      cast: optional function applied to every operator's result (e.g. keep float32 in NumPy).

    Shapes are the caller's: the operators act element-wise, and along the last axis for the
    class-wise ones (softmax, dot).
    """
    values: list = []
    for index, (code, lhs, rhs) in enumerate(graph):
        spec = ops.OPS[code]
        if spec.arity == 0:
            values.append(leaf(index, code))
            continue
        operands = (values[lhs],) if spec.arity == 1 else (values[lhs], values[rhs])
        value = spec.fn(namespace, *operands)
        values.append(value if cast is None else cast(value))
    return values[-1]

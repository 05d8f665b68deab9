"""The user-facing loss object: one candidate loss of one branch, exportable in every form."""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

from jaxloss.space import branches, printing
from jaxloss.space import graph as graphs
from jaxloss.space.graph import Node
from jaxloss.space.parse import DEFAULT_MAX_NODES, parse_graph


class Loss:
    """A candidate loss: an expression graph over one branch's inputs, giving a per-sample value.

    Build one with :func:`jaxloss.space.parse`, from :data:`jaxloss.LIBRARY`, or by indexing a
    :class:`jaxloss.Population`. Equality and ``hash()`` are structural: two losses are equal when
    they are the same expression up to the order of commutative operands (``a + b`` == ``b + a``).

    Attributes:
      graph: the compact node list (:mod:`jaxloss.space.graph`), output last.
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``.
      name: an optional label (library losses carry their name).
    """

    def __init__(self, graph: Sequence[Node], branch: str, name: str | None = None):
        self.graph = tuple(tuple(int(v) for v in node) for node in graph)
        self.branch = branches.get(branch).name
        self.name = name
        if not self.graph:
            raise ValueError("a loss needs at least one node")

    @classmethod
    def parse(cls, text: str, branch: str, max_nodes: int | None = DEFAULT_MAX_NODES,
              name: str | None = None) -> "Loss":
        return cls(parse_graph(text, branch, max_nodes), branch, name)

    # -- identity ---------------------------------------------------------------------------
    @cached_property
    def key(self) -> str:
        """Structural hash (32 hex digits), the same for ``a + b`` and ``b + a``."""
        return graphs.structural_hash(self.graph)

    def __hash__(self) -> int:
        return hash((self.branch, self.key))

    def __eq__(self, other) -> bool:
        return isinstance(other, Loss) and (self.branch, self.key) == (other.branch, other.key)

    def canonical(self) -> "Loss":
        """The canonical form: commutative operands in a fixed order (equal losses → equal text)."""
        return Loss(graphs.canonical(self.graph), self.branch, self.name)

    # -- size -------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of graph nodes (inputs, constants and operators; shared ones counted once)."""
        return len(self.graph)

    @property
    def depth(self) -> int:
        return graphs.depth(self.graph)

    # -- exports ----------------------------------------------------------------------------
    def __str__(self) -> str:
        return printing.to_text(self.graph)

    def __repr__(self) -> str:
        label = f", name={self.name!r}" if self.name else ""
        return f"Loss({str(self)!r}, branch={self.branch!r}{label})"

    def prefix(self) -> str:
        """The release's prefix notation, e.g. ``Neg(Dot(Mul(y,Add(1,Sin(w))),Log(Softmax(x))))``."""
        return printing.to_prefix(self.graph)

    def latex(self) -> str:
        return printing.to_latex(self.graph)

    def sympy(self, simplify: bool = False):
        """The formula as a sympy expression (closed forms of every operator; see printing)."""
        expr = printing.to_sympy(self.graph)
        if simplify:
            import sympy as sp

            expr = sp.simplify(expr)
        return expr

    def with_name(self, name: str) -> "Loss":
        return Loss(self.graph, self.branch, name)

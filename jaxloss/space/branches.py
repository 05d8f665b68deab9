"""The three branches of the search space: their inputs, constants and operator sets.

| branch       | detector family        | inputs (shapes)                                     | operators |
|--------------|------------------------|-----------------------------------------------------|-----------|
| ``cls``        | two-stage (softmax)    | x [N, K] logits, y [N, K] one-hot, w [N] IoU (K=C+1) | all 21    |
| ``cls_binary`` | one-stage (sigmoid)    | x [N] logit, y [N] in {0, 1}, w [N] IoU             | 19: no softmax, no dot |
| ``reg``        | box regression         | i [N] intersection, u [N] union, e [N] enclosing    | 15: no softmax, dot, gd, alf, erf, erfc |

Constants 1, 2, 3 in every branch.

Why these operator sets:
- ``cls_binary`` works on one score per (sample, class) pair, so there is no class axis for softmax
  and dot to act on (softmax of a single score is the constant 1, dot is ×).
- ``reg``: the release's regression search space (``get_reg_pset`` in the release's
  ``tools/search_space.py``): add, sub, mul, div, neg, log, exp, abs, sqrt, softplus, sigmoid, tanh,
  relu, sin and cos (the paper says only that it has fewer operators: "more primitive functions ...
  do not bring performance gain"). B_reg was searched in this space. Applied to raw areas in pixels
  (hundreds to 10⁵), exp, the S-curves, tanh, sin and cos saturate or overflow; they act on ratios
  such as ``i/u`` or ``e/u``, which is how a candidate can use them (``exp(-i/u)``,
  ``2 - cos(1 - i/u)``), and the checks reject what they make inconsistent. (Earlier versions of
  jaxloss gave this branch only 8: neg, abs, sqrt, log, +, -, ×, ÷.)

Per-sample values in the ``cls`` branch are broadcast along the class axis; a root that is still
per-class (e.g. ``-y*log(softmax(x))``) is summed over classes to give the per-sample loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxloss.space import ops


@dataclass(frozen=True)
class Branch:
    """A branch of the search space.

    Attributes:
      name: ``"cls"``, ``"cls_binary"`` or ``"reg"``.
      inputs: input names, in the order of the engine's leaf table.
      operators: opcodes of the operators allowed (unary and binary).
      class_axis: whether x and y carry a class axis (only ``cls``).
    """

    name: str
    inputs: tuple[str, ...]
    operators: tuple[int, ...]
    class_axis: bool = False

    @property
    def leaves(self) -> tuple[int, ...]:
        """Opcodes of the leaves: the inputs, then the constants 1, 2, 3."""
        return tuple(ops.code(n) for n in self.inputs) + tuple(ops.CONSTANTS)

    @property
    def codes(self) -> tuple[int, ...]:
        """Every opcode a genome of this branch may hold (leaves and operators)."""
        return self.leaves + self.operators

    @property
    def unary(self) -> tuple[int, ...]:
        return tuple(c for c in self.operators if ops.OPS[c].arity == 1)

    @property
    def binary(self) -> tuple[int, ...]:
        return tuple(c for c in self.operators if ops.OPS[c].arity == 2)

    def allows(self, code: int) -> bool:
        return code in self.codes


def _codes(*names: str) -> tuple[int, ...]:
    return tuple(ops.code(n) for n in names)


BRANCHES: dict[str, Branch] = {
    "cls": Branch("cls", ("x", "y", "w"), ops.OPERATORS, class_axis=True),
    "cls_binary": Branch(
        "cls_binary", ("x", "y", "w"),
        tuple(c for c in ops.OPERATORS if not ops.OPS[c].class_wise)),
    "reg": Branch("reg", ("i", "u", "e"),
                  _codes("neg", "exp", "log", "abs", "sqrt", "softplus", "sigmoid", "tanh",
                         "relu", "sin", "cos", "add", "sub", "mul", "div")),
}


def get(branch: str | Branch) -> Branch:
    """The :class:`Branch` called ``branch``; a clear ``ValueError`` for an unknown name."""
    if isinstance(branch, Branch):
        return branch
    try:
        return BRANCHES[branch]
    except KeyError:
        raise ValueError(
            f"unknown branch {branch!r}: choose one of {', '.join(BRANCHES)}") from None


def per_class_flags(graph, branch: str) -> list[bool]:
    """Whether each node's value is per-class (``cls`` only): x, y, softmax(·), and element-wise
    operators with a per-class operand; w, constants and dot(·, ·) are per-sample."""
    spec = get(branch)
    flags: list[bool] = []
    for code, lhs, rhs in graph:
        name = ops.OPS[code].name
        arity = ops.OPS[code].arity
        if not spec.class_axis or name == "dot" or (arity == 0 and name not in ("x", "y")):
            flags.append(False)
        elif name in ("x", "y", "softmax"):
            flags.append(True)
        else:
            flags.append(flags[lhs] or (arity == 2 and flags[rhs]))
    return flags

"""``bridge.to_torch``: a jaxloss candidate as a differentiable ``torch.nn.Module``."""

from __future__ import annotations

import torch

import jaxloss
from bridge.namespace import TORCH
from jaxloss.engine.walk import walk
from jaxloss.space import branches, ops
from jaxloss.space.branches import per_class_flags
from jaxloss.space.resolve import as_loss


class LossModule(torch.nn.Module):
    """Per-sample values of one jaxloss loss, computed from its graph with torch operators.

    Inputs as in ``jaxloss.engine.evaluate``: ``cls``: x [N, K], y [N, K], w [N]; ``cls_binary``: x, y, w
    [N]; ``reg``: i, u, e [N]. Returns [N] in the inputs' dtype and on their device (CPU or CUDA),
    differentiable in every input. The graph is walked node by node with the same operator table
    and guards as the JAX engine (:mod:`jaxloss.space.ops`, :mod:`jaxloss.space.guards`); no text is ever
    evaluated.

    ``constants``: real values for the loss's whole-number constants, one per use, in the order
    of :func:`jaxloss.space.graph.unshare_constants` (what ``--tune-constants`` reports as ``values``).

    Attributes:
      loss: the :class:`jaxloss.Loss` it computes (with whole-number constants).
      branch: its :class:`jaxloss.Branch`.
      constants: the tuned values, or None.
    """

    def __init__(self, loss: jaxloss.Loss, constants=None):
        super().__init__()
        self.loss = loss
        self.branch = branches.get(loss.branch)
        self.graph = loss.graph
        self.constants = None
        self._overrides: dict[int, float] = {}
        if constants is not None:
            from jaxloss.space.graph import unshare_constants

            nodes, slots, start = unshare_constants(loss.graph)
            if len(constants) != len(slots):
                raise ValueError(f"{loss} has {len(slots)} numeric constant(s) to tune "
                                 f"(starting at {list(start)}); got {len(constants)} value(s)")
            self.graph = nodes
            self.constants = tuple(float(v) for v in constants)
            self._overrides = dict(zip(slots, self.constants))
        self._per_class_root = per_class_flags(self.graph, loss.branch)[-1]
        self.uses = frozenset(ops.OPS[code].name for code, _, _ in loss.graph
                              if ops.OPS[code].arity == 0 and code not in ops.CONSTANTS)
        """Names of the inputs the formula reads (e.g. ``{"x", "y"}`` for CE: no ``w``)."""

    def extra_repr(self) -> str:
        if self.constants is not None:
            from jaxloss.space.printing import to_text

            return f"{self.loss.branch}: {to_text(self.graph, self._overrides)}"
        return f"{self.loss.branch}: {self.loss}"

    def _check(self, inputs: dict[str, torch.Tensor]) -> None:
        names = self.branch.inputs
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise ValueError(f"the {self.branch.name} loss takes the inputs {', '.join(names)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(extra)}" if extra else ""))
        shapes = {n: tuple(inputs[n].shape) for n in names}
        if self.branch.class_axis:
            x, y, w = shapes["x"], shapes["y"], shapes["w"]
            if len(x) != 2 or y != x or w != x[:1]:
                raise ValueError(f"cls inputs must be x [N, K], y [N, K] and w [N]; got x {x}, "
                                 f"y {y}, w {w}")
        elif len(set(shapes.values())) != 1 or len(shapes[names[0]]) != 1:
            raise ValueError(f"{self.branch.name} inputs must all be 1-D of the same length N; "
                             "got " + ", ".join(f"{n} {s}" for n, s in shapes.items()))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        like = inputs["x"] if self.branch.class_axis else inputs[self.branch.inputs[0]]
        shape = like.shape if self.branch.class_axis else like.shape + (1,)
        leaves = {}
        for name in self.branch.inputs:
            t = inputs[name].to(dtype=like.dtype)
            leaves[ops.code(name)] = (t.unsqueeze(-1) if t.dim() == 1 else t).expand(shape)
        for code, value in ops.CONSTANTS.items():
            leaves[code] = torch.full(shape, value, dtype=like.dtype, device=like.device)

        def leaf(index: int, code: int) -> torch.Tensor:
            if index in self._overrides:
                return torch.full(shape, self._overrides[index], dtype=like.dtype,
                                  device=like.device)
            return leaves[code]

        out = walk(self.graph, leaf, TORCH)
        if self._per_class_root:
            return TORCH.sum_last(out)[..., 0]
        return out[..., 0]


def to_torch(loss: "jaxloss.Loss | jaxloss.Population | str", branch: str | None = None
             ) -> LossModule:
    """A ``torch.nn.Module`` computing exactly what ``jaxloss.engine.evaluate`` computes for ``loss``.

    Args:
      loss: a :class:`jaxloss.Loss`; a :class:`jaxloss.Population` of one genome; the name of a
        library loss (``"CSE-Autoloss-A_cls"``); formula text (then ``branch`` is needed); or a
        :class:`jaxloss.evolution.tune.TunedLoss` (its real-valued constants included).
      branch: the branch of formula text; checked against the loss's own branch otherwise.

    The module is built from the loss graph (the genome's nodes), never by evaluating text.
    """
    from jaxloss.evolution.tune import TunedLoss

    if isinstance(loss, TunedLoss):
        if branch is not None and branches.get(branch).name != loss.branch:
            raise ValueError(f"{loss.text} is a {loss.branch} loss, not {branch}")
        return LossModule(loss.loss, loss.values)
    if isinstance(loss, jaxloss.Population):
        if len(loss) != 1:
            raise ValueError(f"to_torch takes one genome; the population has {len(loss)} "
                             "(use to_torch(pop[k]))")
        loss = loss[0]
    if not isinstance(loss, (jaxloss.Loss, str)):
        raise TypeError(f"to_torch takes a jaxloss.Loss, a Population of one genome, a library "
                        f"name or formula text, not {type(loss).__name__}")
    loss = as_loss(loss, branch)
    return LossModule(loss)

"""One rule for "which loss does the user mean": a :class:`Loss`, the name of a library loss, or
formula text (the paper's or the release's notation) → a :class:`Loss` of the branch asked for.

Every entry point that accepts a loss uses it: ``jaxloss.evaluate``, ``jaxloss.check``,
``bridge.to_torch``, MMDetection's ``SearchedLoss``, ``bridge.compare`` and the search's
``--initial``. A library name carries its own branch; formula text needs one. Text is parsed,
never evaluated.
"""

from __future__ import annotations

from jaxloss.errors import FormulaError
from jaxloss.space import branches
from jaxloss.space.library import LIBRARY
from jaxloss.space.loss import Loss
from jaxloss.space.parse import parse_graph

BRANCH_WORDS = {"cls": "softmax classification, two-stage RoI heads",
                "cls_binary": "per-class sigmoid classification, one-stage heads",
                "reg": "box regression"}
"""What each branch is, for messages."""


def as_loss(value, branch: str | None = None, *, max_nodes: int | None = None) -> Loss:
    """The :class:`Loss` that ``value`` names.

    Args:
      value: a :class:`Loss`, a library name (``"FL"``, ``"CSE-Autoloss-A_cls"``; see
        :data:`jaxloss.LIBRARY`) or formula text.
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``: needed for formula text; for a Loss or a
        library name it is checked against the loss's own branch (None: no check).
      max_nodes: the capacity formula text must fit (None: any size).

    Raises:
      FormulaError (a ValueError): text that does not parse (with the position), text without a
        branch, or a loss of another branch; ValueError for an unknown branch name.
    """
    if branch is not None:
        branch = branches.get(branch).name
    if isinstance(value, Loss):
        loss = value
    elif not isinstance(value, str) or not value.strip():
        raise FormulaError(f"a loss is a library name ({', '.join(LIBRARY)}), formula text or a "
                           f"jaxloss.Loss; got {value!r}")
    elif value.strip() in LIBRARY:
        loss = LIBRARY[value.strip()]
    elif branch is None:
        raise FormulaError(
            f"{value!r} is formula text, which needs branch= ("
            + "; ".join(f"{b!r}: {w}" for b, w in BRANCH_WORDS.items())
            + f"); only library names ({', '.join(LIBRARY)}) carry their own branch")
    else:
        return Loss(parse_graph(value, branch, max_nodes), branch)
    if branch is not None and loss.branch != branch:
        raise FormulaError(f"{value if isinstance(value, str) else str(value)!r} is a "
                           f"{loss.branch} loss, not {branch} ({BRANCH_WORDS[branch]})")
    return loss

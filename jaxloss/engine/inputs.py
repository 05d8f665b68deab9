"""Checking a branch's inputs and laying them out as the engine's leaf table."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxloss.space import branches, ops


class Leaves(NamedTuple):
    """The leaf table of a branch for one set of inputs.

    Attributes:
      values: float32 [L, S]: the branch's inputs, then the constants 1, 2, 3; S = N·K for ``cls``
        (class axis last; w broadcast along it), S = N otherwise.
      num_samples: N.
      num_classes: K for ``cls``, 1 otherwise.
    """

    values: np.ndarray
    num_samples: int
    num_classes: int


def check_inputs(branch: str, inputs: dict) -> dict[str, np.ndarray]:
    """The inputs as float32 arrays with their shapes checked; ValueError says what is wrong.

    Expected: ``cls``: x [N, K], y [N, K], w [N]; ``cls_binary``: x, y, w [N]; ``reg``: i, u, e [N].
    """
    spec = branches.get(branch)
    missing = [n for n in spec.inputs if n not in inputs]
    extra = [n for n in inputs if n not in spec.inputs]
    if missing or extra:
        raise ValueError(f"the {spec.name} branch takes the inputs {', '.join(spec.inputs)}"
                         + (f"; missing {', '.join(missing)}" if missing else "")
                         + (f"; unknown {', '.join(extra)}" if extra else ""))
    arrays = {n: np.asarray(inputs[n], np.float32) for n in spec.inputs}
    if spec.class_axis:
        x, y, w = arrays["x"], arrays["y"], arrays["w"]
        if x.ndim != 2 or y.shape != x.shape or w.shape != x.shape[:1]:
            raise ValueError(f"cls inputs must be x [N, K], y [N, K] and w [N]; got x {x.shape}, "
                             f"y {y.shape}, w {w.shape}")
    else:
        shapes = {n: a.shape for n, a in arrays.items()}
        first = arrays[spec.inputs[0]]
        if first.ndim != 1 or any(s != first.shape for s in shapes.values()):
            raise ValueError(f"{spec.name} inputs must all be 1-D of the same length N; got "
                             + ", ".join(f"{n} {s}" for n, s in shapes.items()))
    return arrays


def leaf_table(branch: str, inputs: dict) -> Leaves:
    """The leaf table (see :class:`Leaves`) for the given inputs, shapes checked."""
    spec = branches.get(branch)
    arrays = check_inputs(spec.name, inputs)
    n = arrays[spec.inputs[0]].shape[0]
    k = arrays["x"].shape[1] if spec.class_axis else 1
    rows = []
    for name in spec.inputs:
        a = arrays[name]
        rows.append(np.broadcast_to(a[:, None] if a.ndim == 1 else a, (n, k)).reshape(-1))
    for value in ops.CONSTANTS.values():
        rows.append(np.full(n * k, value, np.float32))
    return Leaves(np.stack(rows).astype(np.float32), n, k)

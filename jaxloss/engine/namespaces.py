"""Array namespaces: the handful of functions the operator table (:mod:`jaxloss.space.ops`) needs.

Each namespace maps the same names onto one array library, so that one definition of every operator
serves the batched JAX engine, the NumPy reference evaluator, and (in ``bridge``) PyTorch.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from jaxloss.engine import trig


def _sequential_last(combine, a):
    """Reduce the (small, static) class axis left to right, keeping it as size 1.

    XLA picks a reduction order that depends on the array's other dimensions, so ``jnp.sum`` over
    the class axis could round differently depending on how many genomes share a chunk; a fixed
    order makes every genome's values independent of its neighbours (bit for bit).
    """
    out = a[..., :1]
    for k in range(1, a.shape[-1]):
        out = combine(out, a[..., k:k + 1])
    return out


@jax.custom_jvp
def _jax_divide(a, b):
    return a / b


@_jax_divide.defjvp
def _jax_divide_jvp(primals, tangents):
    # JAX's own rule adds ta/b and -tb·a/b², and 1/b² overflows float32 for |b| < 1e-19 (the
    # division guard's b = 0 gives b + 1e-20), so a zero tb (a denominator that does not depend on
    # the direction) still turned the derivative into 0·inf = NaN. (ta - q·tb)/b is the same
    # derivative and stays finite wherever it is representable.
    a, b = primals
    ta, tb = tangents
    q = a / b
    return q, (ta - q * tb) / b


def _jax_namespace() -> SimpleNamespace:
    return SimpleNamespace(
        divide=_jax_divide, exp=jnp.exp, log=jnp.log, log1p=jnp.log1p, abs=jnp.abs, sqrt=jnp.sqrt, tanh=jnp.tanh,
        round=jnp.round, floor=jnp.floor, erf=jax.scipy.special.erf,
        erfc=jax.scipy.special.erfc, where=jnp.where,
        sigmoid=jax.nn.sigmoid, minimum=jnp.minimum, maximum=jnp.maximum,
        max_last=lambda a: _sequential_last(jnp.maximum, a),
        sum_last=lambda a: _sequential_last(jnp.add, a),
        broadcast_like=lambda a, like: jnp.broadcast_to(a, like.shape),
    )


def _numpy_sigmoid(a):
    return scipy.special.expit(a).astype(a.dtype)


def _numpy_namespace() -> SimpleNamespace:
    return SimpleNamespace(
        divide=np.divide, exp=np.exp, log=np.log, log1p=np.log1p, abs=np.abs, sqrt=np.sqrt, tanh=np.tanh,
        round=np.rint, floor=np.floor,
        erf=lambda a: scipy.special.erf(a).astype(a.dtype),
        erfc=lambda a: scipy.special.erfc(a).astype(a.dtype), where=np.where,
        sigmoid=_numpy_sigmoid, minimum=np.minimum, maximum=np.maximum,
        max_last=lambda a: np.max(a, axis=-1, keepdims=True),
        sum_last=lambda a: np.sum(a, axis=-1, keepdims=True),
        broadcast_like=lambda a, like: np.broadcast_to(a, like.shape),
    )


def with_trig(namespace: SimpleNamespace) -> SimpleNamespace:
    """Adds sin, cos and arctan_unit (atan on [0, 1]) computed by :mod:`jaxloss.engine.trig` from the
    namespace's own arithmetic: fast under XLA on CPU, and the same formula in every library."""
    namespace.sin = functools.partial(trig.sin, namespace)
    namespace.cos = functools.partial(trig.cos, namespace)
    namespace.arctan_unit = functools.partial(trig.arctan_unit, namespace)
    return namespace


JAX = with_trig(_jax_namespace())
NUMPY = with_trig(_numpy_namespace())

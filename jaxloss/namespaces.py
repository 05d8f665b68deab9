"""Array namespaces: the handful of functions the operator table (:mod:`jaxloss.ops`) needs.

Each namespace maps the same names onto one array library, so that one definition of every operator
serves the batched JAX engine, the NumPy reference evaluator, and (in ``bridge``) PyTorch.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special


def _jax_namespace() -> SimpleNamespace:
    return SimpleNamespace(
        exp=jnp.exp, log=jnp.log, log1p=jnp.log1p, abs=jnp.abs, sqrt=jnp.sqrt, tanh=jnp.tanh,
        sin=jnp.sin, cos=jnp.cos, arctan=jnp.arctan, erf=jax.scipy.special.erf,
        sigmoid=jax.nn.sigmoid, minimum=jnp.minimum, maximum=jnp.maximum,
        max_last=lambda a: jnp.max(a, axis=-1, keepdims=True),
        sum_last=lambda a: jnp.sum(a, axis=-1, keepdims=True),
        broadcast_like=lambda a, like: jnp.broadcast_to(a, like.shape),
    )


def _numpy_sigmoid(a):
    return scipy.special.expit(a).astype(a.dtype)


def _numpy_namespace() -> SimpleNamespace:
    return SimpleNamespace(
        exp=np.exp, log=np.log, log1p=np.log1p, abs=np.abs, sqrt=np.sqrt, tanh=np.tanh,
        sin=np.sin, cos=np.cos, arctan=np.arctan,
        erf=lambda a: scipy.special.erf(a).astype(a.dtype),
        sigmoid=_numpy_sigmoid, minimum=np.minimum, maximum=np.maximum,
        max_last=lambda a: np.max(a, axis=-1, keepdims=True),
        sum_last=lambda a: np.sum(a, axis=-1, keepdims=True),
        broadcast_like=lambda a, like: np.broadcast_to(a, like.shape),
    )


JAX = _jax_namespace()
NUMPY = _numpy_namespace()

"""sin, cos and arctan from + − × ÷, so that every array library computes them the same fast way.

Why: XLA on CPU calls the C library one element at a time for ``sin``, ``cos`` and ``arctan``
(measured on the 2-core CI machine, one core: ~8.5 ns per element for ``jnp.sin``/``jnp.cos`` and
~11.5 ns for ``jnp.arctan``, against ~0.5 ns for ``jnp.exp``). Random candidates use sin, cos and
the Gudermannian S-curve (two arctan) about as often as any other operator, so those three alone
took ~70% of the batched engine's arithmetic. Written as polynomials they vectorise like ``exp``.

Accuracy (float32, measured by ``tests/engine/test_trig.py`` against float64 NumPy):
  * :func:`arctan_unit` on [0, 1]: a reduction to |s| <= tan(π/8) and the Taylor series of
    atan(s) to s¹⁷ (truncation error <= s¹⁹/19 < 7e-9 relative), within a few float32 ulp.
  * :func:`sin`, :func:`cos`: the argument is reduced by π/2 in four parts of at most 8 significant
    bits each (Cody–Waite), so the reduction is exact for |a| <= 2¹⁶·π/2 ≈ 1.0e5 and the result
    is within a few float32 ulp of the true value there; then Taylor polynomials on |r| <= 0.8
    (truncation error < 3e-9). Beyond 1e5 the reduction error grows with |a| (at 1e5 one float32
    ulp of the argument is already 0.008): the values stay in [-1, 1] and periodic, but no longer
    track the C library's to float32 precision. NaN and ±inf give NaN, as ``sin`` does.

The derivative of each is the derivative of its formula (JAX differentiates the polynomial): it
matches cos, -sin, 1/(1 + t²) to about 1e-7 relative.

Every function takes an array namespace ``M`` (see :mod:`jaxloss.engine.namespaces`), like the operator
table of :mod:`jaxloss.space.ops`.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

TAN_PI_8 = math.tan(math.pi / 8)
"""Above this, arctan_unit uses atan(t) = π/4 + atan((t - 1)/(t + 1))."""

REDUCED_LIMIT = 0.8
"""Bound on the reduced argument of sin and cos (π/4 plus room for rounding; it only binds beyond
the exact-reduction range, where it keeps the polynomials, and so the values, bounded)."""

_PI_DIGITS = "3.14159265358979323846264338327950288419716939937510582097494459"


def _split(value: Decimal, bits: int, parts: int) -> tuple[float, ...]:
    """``value`` as a sum of ``parts`` floats, each but the last with at most ``bits`` significant
    bits (so that an integer of up to 24 - bits bits times each part is exact in float32); the
    last part is the remainder rounded to float32 precision."""
    out = []
    rest = value
    for k in range(parts):
        if k == parts - 1:
            bits = 24
        exponent = math.floor(math.log2(abs(float(rest))))
        scale = Decimal(2) ** (bits - 1 - exponent)
        part = (rest * scale).to_integral_value() / scale
        out.append(float(part))
        rest -= part
    return tuple(out)


with localcontext() as _context:  # 60 digits for the split, without touching the caller's context
    _context.prec = 60
    HALF_PI_PARTS = _split(Decimal(_PI_DIGITS) / 2, 8, 4)
"""π/2 = C1 + C2 + C3 + C4 (C1..C3 with 8 significant bits, C4 the float32 remainder)."""

TWO_OVER_PI = 2.0 / math.pi

# Taylor coefficients (exact rationals rounded to float64; the error of the truncated series is
# below float32 resolution on the reduced ranges, so no fitted constants are needed).
_ATAN = tuple((-1.0) ** k / (2 * k + 1) for k in range(1, 9))  # s³ .. s¹⁷ over s
_SIN = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 5))  # r³ .. r⁹ over r
_COS = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(1, 6))  # r² .. r¹⁰


def _horner(z, coefficients):
    """c0·z + c1·z² + ... + cn·z^(n+1) by Horner's rule."""
    acc = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        acc = acc * z + c
    return acc * z


def arctan_unit(M, t):
    """atan(t) for t in [0, 1] (elsewhere undefined: callers guarantee the range)."""
    high = t > TAN_PI_8
    s = M.where(high, (t - 1.0) / (t + 1.0), t)
    p = s + s * _horner(s * s, _ATAN)
    return M.where(high, p + math.pi / 4, p)


def _reduce(M, a):
    """(r, q): a = r + j·π/2 with |r| <= π/4 (within the exact range), q = j mod 4 in {0..3}."""
    j = M.round(a * TWO_OVER_PI)
    c1, c2, c3, c4 = HALF_PI_PARTS
    r = (((a - j * c1) - j * c2) - j * c3) - j * c4
    r = M.minimum(M.maximum(r, -REDUCED_LIMIT), REDUCED_LIMIT)
    q = j - 4.0 * M.floor(0.25 * j)
    return r, q


def _sin_cos_reduced(M, r):
    z = r * r
    return r + r * _horner(z, _SIN), 1.0 + _horner(z, _COS)


def sin(M, a):
    """sin(a) (see the module docstring for the accuracy)."""
    r, q = _reduce(M, a)
    s, c = _sin_cos_reduced(M, r)
    odd = (q == 1.0) | (q == 3.0)
    value = M.where(odd, c, s)
    return M.where(q >= 2.0, -value, value)


def cos(M, a):
    """cos(a) (see the module docstring for the accuracy)."""
    r, q = _reduce(M, a)
    s, c = _sin_cos_reduced(M, r)
    odd = (q == 1.0) | (q == 3.0)
    value = M.where(odd, s, c)
    return M.where((q == 1.0) | (q == 2.0), -value, value)

"""Every numerical guard of the search space, in one table.

The published CSE-Autoloss release guards three operators; jaxloss keeps exactly those guards so that
a formula means the same thing here, in the release, and in the PyTorch bridge. Everything else is
unguarded on purpose: an operator that produces NaN or ±inf on the check grid (sqrt of a negative
number, log of a negative number, division by a value that cancels the epsilon) is what the validity
check exists to catch, and silently clamping it would let broken losses through.

| guard            | where          | value  | effect                                             |
|------------------|----------------|--------|----------------------------------------------------|
| LOG_EPS          | log(a)         | 1e-20  | log(a + 1e-20): log(0) = -46.05, not -inf           |
| DIV_EPS          | a / b          | 1e-20  | a / (b + 1e-20): a / 0 is finite (1e20·a)          |
| EXP_MAX          | exp(a)         | 88.0   | exp(min(a, 88)): at most 1.65e38 < float32 max     |
| AREA_EPS         | reg inputs     | 1e-7   | u + 1e-7 and e + 1e-7 (px²), never i: i/u, e finite |

Numerically stable forms that are not guards (they change no value, only avoid overflow inside
the computation): softmax subtracts the class-wise maximum; sigmoid and softplus use their
overflow-free forms (softplus(a) = max(a, 0) + log1p(exp(-|a|)), written so that its derivative at 0
is the true 1/2, see :mod:`jaxloss.space.ops`); tanh beyond |a| = 1/2 is (1 - e)/(1 + e) with
e = exp(-2|a|), the same formula in every library (XLA's own tanh saturates to ±1 too early).

Derivatives at ties (the kinks of |a|, relu and the exp clamp) follow JAX, in the engine and in
the PyTorch bridge alike: |a|' = 1 at 0 (the release, with torch.abs: 0), relu'(0) = 1/2 (the
release, torch.relu: 0), and exp's clamp min(a, 88) has slope 1/2 at a = 88, so exp'(88) = e⁸⁸/2
(the release, torch.clamp: 0). Everywhere else every operator's derivative is the derivative of its
value (tests/space/test_ops.py checks it against float64 central differences; tests/space/test_release_parity.py
against the release's operators).
"""

LOG_EPS = 1e-20
DIV_EPS = 1e-20
EXP_MAX = 88.0
AREA_EPS = 1e-7
"""Added to the union u and the enclosing area e of the ``reg`` inputs (px², the release's
convention; :mod:`jaxloss.space.boxes`). Not an operator guard, so not in :data:`GUARDS`."""

GUARDS = {
    "log": {"constant": "LOG_EPS", "value": LOG_EPS, "form": "log(a + 1e-20)"},
    "div": {"constant": "DIV_EPS", "value": DIV_EPS, "form": "a / (b + 1e-20)"},
    "exp": {"constant": "EXP_MAX", "value": EXP_MAX, "form": "exp(min(a, 88))"},
}
"""The guard table, by operator name: the constant, its value and the guarded form."""

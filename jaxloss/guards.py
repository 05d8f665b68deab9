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

Numerically stable forms that are not guards (they change no value, only avoid overflow inside
the computation): softmax subtracts the class-wise maximum; sigmoid and softplus use their
overflow-free forms (softplus(a) = max(a, 0) + log1p(exp(-|a|))).
"""

LOG_EPS = 1e-20
DIV_EPS = 1e-20
EXP_MAX = 88.0

GUARDS = {
    "log": {"constant": "LOG_EPS", "value": LOG_EPS, "form": "log(a + 1e-20)"},
    "div": {"constant": "DIV_EPS", "value": DIV_EPS, "form": "a / (b + 1e-20)"},
    "exp": {"constant": "EXP_MAX", "value": EXP_MAX, "form": "exp(min(a, 88))"},
}
"""The guard table, by operator name: the constant, its value and the guarded form."""

"""Graph → formula text, LaTeX and sympy.

The text form is jaxloss' infix notation, the one :func:`jaxloss.space.parse` reads: ``+ - * /``, unary
minus, function calls (``exp(a)``, ``dot(a, b)``), the constants 1, 2, 3 and the branch's inputs.
Parentheses are written wherever the parser would otherwise group differently, so
``parse(str(loss))`` rebuilds the very same graph. S-curves print by their paper names (``erf``, ``gd``,
``alf``, ``erfc``) and mean the re-scaled versions of the release (see :mod:`jaxloss.space.ops`).
"""

from __future__ import annotations

from typing import Sequence

from jaxloss.space import ops
from jaxloss.space.graph import Node, integer_literals

# precedence: + - (1) < * / (2) < unary minus (3) < atoms and calls (4)
_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2)}
_ATOM = 4
_NEG = 3


def _precedence(code: int) -> int:
    name = ops.OPS[code].name
    if name in _INFIX:
        return _INFIX[name][1]
    return _NEG if name == "neg" else _ATOM


def _needs_right_parens(child: int, prec: int) -> bool:
    """A right operand (of precedence ``child``) is grouped if it binds no tighter than its
    operator (of precedence ``prec``), or is a negation."""
    return child <= prec or child == _NEG


def to_text(graph: Sequence[Node], constants: dict[int, float] | None = None) -> str:
    """Infix formula text of the graph's output (whole numbers built from 1, 2, 3 print as numbers).

    ``constants`` (node index → real value) prints those leaves as the given numbers: the form of
    a loss whose constants were tuned (:mod:`jaxloss.evolution.tune`); such text is for reading only, since
    formulas of the search space hold whole numbers.
    """
    constants = constants or {}
    texts: list[str] = []
    precs: list[int] = []
    for index, ((code, lhs, rhs), literal) in enumerate(zip(graph, integer_literals(graph))):
        spec = ops.OPS[code]
        prec = _ATOM if literal is not None else _precedence(code)
        if index in constants:
            value = float(constants[index])
            text = f"{value:.4g}" if value >= 0 else f"({value:.4g})"
        elif literal is not None:
            text = str(literal)
        elif spec.arity == 0:
            text = spec.name
        elif spec.name == "neg":
            text = f"-({texts[lhs]})" if precs[lhs] <= _NEG else f"-{texts[lhs]}"
        elif spec.name in _INFIX:
            symbol = _INFIX[spec.name][0]
            left, right = texts[lhs], texts[rhs]
            if precs[lhs] < prec:
                left = f"({left})"
            if _needs_right_parens(precs[rhs], prec):
                right = f"({right})"
            text = f"{left} {symbol} {right}"
        elif spec.arity == 1:
            text = f"{spec.name}({texts[lhs]})"
        else:
            text = f"{spec.name}({texts[lhs]}, {texts[rhs]})"
        texts.append(text)
        precs.append(prec)
    return texts[-1]


def to_prefix(graph: Sequence[Node]) -> str:
    """The release's prefix notation (``Neg(Dot(Mul(y,Add(1,Sin(w))),Log(Softmax(x))))``).

    Inputs keep jaxloss' lower-case names (x, y, w, i, u, e), which the parser accepts in prefix
    notation too. ``Sub`` (not in the release, which writes ``Add(a,Neg(b))``) is kept as ``Sub``.
    """
    texts: list[str] = []
    for code, lhs, rhs in graph:
        spec = ops.OPS[code]
        if spec.arity == 0:
            texts.append(spec.name)
        elif spec.arity == 1:
            texts.append(f"{spec.release}({texts[lhs]})")
        else:
            texts.append(f"{spec.release}({texts[lhs]},{texts[rhs]})")
    return texts[-1]


def to_latex(graph: Sequence[Node]) -> str:
    """LaTeX of the graph's output, structurally faithful (no simplification)."""
    texts: list[str] = []
    for code, lhs, rhs in graph:
        spec = ops.OPS[code]
        if spec.arity == 0:
            texts.append(spec.latex)
            continue
        args = [texts[lhs]] + ([texts[rhs]] if spec.arity == 2 else [])
        if spec.name in ("add", "sub", "mul", "neg"):
            prec = _INFIX[spec.name][1] if spec.name in _INFIX else _NEG
            operand_codes = [graph[lhs][0]] + ([graph[rhs][0]] if spec.arity == 2 else [])
            for k, c in enumerate(operand_codes):
                if ops.OPS[c].name == "div":
                    continue  # \frac groups itself
                if spec.name == "neg":
                    grouped = _precedence(c) <= _NEG
                elif k == 1:
                    grouped = _needs_right_parens(_precedence(c), prec)
                else:
                    grouped = _precedence(c) < prec
                if grouped:
                    args[k] = rf"\left({args[k]}\right)"
        texts.append(spec.latex.format(*args))
    return texts[-1]


def to_sympy(graph: Sequence[Node]):
    """A sympy expression of the graph's output, with the operators' exact closed forms.

    Inputs are real sympy symbols; the class-wise ``softmax`` and ``dot`` stay as undefined sympy
    functions (they act along the class axis, which scalar symbols do not have). Guards (the
    epsilons of log and ÷, the exp clamp) are left out: they do not change the formula's meaning.
    """
    import sympy as sp

    softmax = sp.Function("softmax")
    dot = sp.Function("dot")
    quarter_root_pi = sp.sqrt(sp.pi) / 4
    closed = {
        "neg": lambda a: -a,
        "exp": sp.exp,
        "log": sp.log,
        "abs": sp.Abs,
        "sqrt": sp.sqrt,
        "softmax": softmax,
        "softplus": lambda a: sp.log(1 + sp.exp(a)),
        "sigmoid": lambda a: 1 / (1 + sp.exp(-a)),
        "gd": lambda a: sp.Rational(1, 2) + 2 / sp.pi * sp.atan(sp.tanh(sp.pi * a / 8)),
        "alf": lambda a: sp.Rational(1, 2) + (a / 2) / (2 * sp.sqrt(1 + (a / 2) ** 2)),
        "erf": lambda a: (1 + sp.erf(quarter_root_pi * a)) / 2,
        "erfc": lambda a: (1 - sp.erf(quarter_root_pi * a)) / 2,
        "tanh": sp.tanh,
        "relu": lambda a: sp.Max(0, a),
        "sin": sp.sin,
        "cos": sp.cos,
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "dot": dot,
    }
    values: list = []
    for code, lhs, rhs in graph:
        spec = ops.OPS[code]
        if spec.arity == 0:
            values.append(sp.Integer(int(spec.name)) if spec.name.isdigit()
                          else sp.Symbol(spec.name, real=True))
        else:
            args = [values[lhs]] + ([values[rhs]] if spec.arity == 2 else [])
            values.append(closed[spec.name](*args))
    return values[-1]


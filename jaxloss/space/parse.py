"""Formula text → loss graph. A tokenizer and a recursive-descent parser; nothing is ``eval``-ed.

Two notations are read, and may be mixed:

* the paper's infix notation: ``-dot((1+sin(w))*y, log(softmax(x)))``, with ``+ - * / ^``, ``·`` ``×``
  ``÷`` ``−``, square brackets as parentheses, ``|a|`` for abs, ``√a``, ``σ(a)``, superscripts ``²``
  ``³``, ``log σ(x)`` without parentheses, and implicit products (``3eu``, ``w·y``, ``2(x+1)``);
* the release's prefix notation: ``Neg(Dot(Mul(Y,Add(1,Sin(Z))),Log(Softmax(X))))``, with its
  input names X→x, Y/PY→y, Z→w, Q→w·y, NY→1−y, I/U/E→i/u/e and its operator names (Sig, Serf,
  Salf, Sgdf, ...).

Operator names are case-insensitive; input names are the paper's lower-case letters or the release's
upper-case names. Whole numbers other than the search space's constants 1, 2, 3 are built from them
(``12`` → ``3*(2*2)``); ``a^n`` for a whole n ≥ 1 becomes a product. Every problem raises
:class:`jaxloss.FormulaError` with the position and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jaxloss.errors import FormulaError
from jaxloss.space import branches, ops
from jaxloss.space.graph import GraphBuilder, Node, integer

DEFAULT_MAX_NODES = 64
"""Largest graph ``parse`` accepts unless told otherwise (the published losses need at most 26)."""

MAX_INTEGER = 1000
MAX_EXPONENT = 8

_FUNCTIONS: dict[str, int] = {}
for _spec in ops.OPS.values():
    if _spec.arity > 0:
        for _name in (_spec.name, _spec.release, *_spec.aliases):
            if _name:
                _FUNCTIONS[_name.lower()] = _spec.code

# input name → the jaxloss input it means, or the expression a release input stands for.
# Paper names are lower case, the release's upper case.
_INPUT_ALIASES = {
    "x": "x", "y": "y", "w": "w", "i": "i", "u": "u", "e": "e", "x'": "x", "y'": "y",
    "X": "x", "Y": "y", "PY": "y", "Z": "w", "I": "i", "U": "u", "E": "e",
    "Q": "w*y", "NY": "1-y",
}

_SYMBOLS = {
    "+": "+", "-": "-", "−": "-", "*": "*", "·": "*", "×": "*", "⋅": "*", "/": "/", "÷": "/",
    "(": "(", ")": ")", "[": "(", "]": ")", ",": ",", "|": "|", "^": "^", "²": "²", "³": "³",
    "√": "√", "σ": "σ",
}
_CLOSING = {"(": ")", "[": "]"}

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*'?)"
                    r"|(?P<sym>\S))")


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "name", a normalised symbol, or "end"
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split formula text into tokens; unknown characters raise FormulaError."""
    tokens: list[Token] = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:  # only whitespace is left
            break
        start = m.start(m.lastgroup)
        value = m.group(m.lastgroup)
        if m.lastgroup == "sym":
            if value not in _SYMBOLS:
                raise FormulaError(
                    f"unexpected character {value!r}; expected a name, a number, an operator "
                    "(+ - * / ^) or a bracket", text, start)
            tokens.append(Token(_SYMBOLS[value], value, start))
        else:
            tokens.append(Token(m.lastgroup, value, start))
        pos = m.end()
    tokens.append(Token("end", "", len(text.rstrip())))
    return tokens


class _Parser:
    """Recursive descent over the grammar

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary | <implicit product> unary)*
    unary   := ('-' | '+') unary | power
    power   := primary ('^' NUMBER | '²' | '³')*
    primary := NUMBER | INPUT | INPUTS (e.g. ``eu``) | FUNCTION '(' expr (',' expr)* ')'
             | UNARY_FUNCTION power  (the paper's ``log σ(x)``)
             | '(' expr ')' | '|' expr '|' | '√' power | 'σ' '(' expr ')'
    """

    def __init__(self, text: str, branch: branches.Branch):
        self.text = text
        self.branch = branch
        self.tokens = self._split_input_runs(tokenize(text))
        self.k = 0
        self.builder = GraphBuilder()

    def _split_input_runs(self, tokens: list[Token]) -> list[Token]:
        """``eu`` → ``e`` ``u``: a run of the branch's one-letter inputs is an implicit product."""
        out: list[Token] = []
        for tok in tokens:
            if (tok.kind == "name" and len(tok.text) > 1 and tok.text not in _INPUT_ALIASES
                    and tok.text.lower() not in _FUNCTIONS
                    and all(ch in self.branch.inputs for ch in tok.text)):
                out.extend(Token("name", ch, tok.pos + k) for k, ch in enumerate(tok.text))
            else:
                out.append(tok)
        return out

    # -- helpers --------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.k]

    def error(self, reason: str, pos: int | None = None) -> FormulaError:
        return FormulaError(reason, self.text, self.tok.pos if pos is None else pos)

    def describe(self, tok: Token) -> str:
        return "the end of the formula" if tok.kind == "end" else repr(tok.text)

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}, found {self.describe(self.tok)}")
        tok = self.tok
        self.k += 1
        return tok

    def node(self, name: str, *args: int, pos: int) -> int:
        code = ops.code(name)
        if ops.OPS[code].arity > 0 and not self.branch.allows(code):
            allowed = ", ".join(ops.OPS[c].name for c in self.branch.operators)
            raise self.error(f"operator {name!r} is not in the {self.branch.name} branch's "
                             f"operator set ({allowed})", pos)
        return self.builder.add(code, *args)

    # -- grammar --------------------------------------------------------------------------------
    def parse(self) -> int:
        if self.tok.kind == "end":
            raise self.error("empty formula: expected an expression")
        root = self.expr()
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                raise self.error(f"unbalanced {self.tok.text!r}: no bracket is open here")
            raise self.error(f"expected an operator or the end of the formula, "
                             f"found {self.describe(self.tok)}")
        return root

    def expr(self) -> int:
        left = self.term()
        while self.tok.kind in ("+", "-"):
            op = self.tok
            self.k += 1
            right = self.term()
            left = self.node("add" if op.kind == "+" else "sub", left, right, pos=op.pos)
        return left

    def _starts_primary(self) -> bool:
        return self.tok.kind in ("num", "name", "(", "√", "σ")

    def term(self) -> int:
        left = self.unary()
        while True:
            if self.tok.kind in ("*", "/"):
                op = self.tok
                self.k += 1
                right = self.unary()
                left = self.node("mul" if op.kind == "*" else "div", left, right, pos=op.pos)
            elif self._starts_primary():  # implicit product: 3eu, 2(x + 1), w y
                pos = self.tok.pos
                right = self.power()
                left = self.node("mul", left, right, pos=pos)
            else:
                return left

    def unary(self) -> int:
        if self.tok.kind == "-":
            pos = self.tok.pos
            self.k += 1
            return self.node("neg", self.unary(), pos=pos)
        if self.tok.kind == "+":
            self.k += 1
            return self.unary()
        return self.power()

    def power(self) -> int:
        base = self.primary()
        while self.tok.kind in ("^", "²", "³"):
            op = self.tok
            self.k += 1
            if op.kind == "^":
                if self.tok.kind != "num" or not self.tok.text.isdigit():
                    raise self.error(f"expected a whole-number exponent after '^' "
                                     f"(1 to {MAX_EXPONENT}), found {self.describe(self.tok)}")
                n = int(self.tok.text)
                if not 1 <= n <= MAX_EXPONENT:
                    raise self.error(f"exponent {n} is out of range: the search space has no "
                                     f"power operator, so a^n is a product of n factors and n "
                                     f"must be 1 to {MAX_EXPONENT}")
                self.k += 1
            else:
                n = 2 if op.kind == "²" else 3
            base = self.product_power(base, n, op.pos)
        return base

    def product_power(self, base: int, n: int, pos: int) -> int:
        """base^n as a product of n factors, nested to the left: x³ → (x*x)*x."""
        result = base
        for _ in range(n - 1):
            result = self.node("mul", result, base, pos=pos)
        return result

    def primary(self) -> int:
        tok = self.tok
        if tok.kind == "num":
            self.k += 1
            return self.number(tok)
        if tok.kind == "name":
            return self.name()
        if tok.kind == "(":
            self.k += 1
            inner = self.expr()
            self.close(tok)
            return inner
        if tok.kind == "|":
            self.k += 1
            inner = self.expr()
            self.expect("|", "'|' to close the absolute value opened at position "
                             f"{tok.pos}")
            return self.node("abs", inner, pos=tok.pos)
        if tok.kind == "√":
            self.k += 1
            return self.node("sqrt", self.power(), pos=tok.pos)
        if tok.kind == "σ":
            self.k += 1
            return self.call("sigmoid", tok)
        if tok.kind == "end":
            raise self.error("unexpected end of formula: expected an operand (an input, a "
                             "constant, a function call or a bracket)")
        raise self.error(f"expected an operand (an input, a constant, a function call or a "
                         f"bracket), found {self.describe(tok)}")

    def close(self, opening: Token) -> None:
        want = _CLOSING.get(opening.text, ")")
        if self.tok.kind != ")" or self.tok.text != want:
            raise self.error(f"expected {want!r} to close the {opening.text!r} opened at "
                             f"position {opening.pos}, found {self.describe(self.tok)}")
        self.k += 1

    def number(self, tok: Token) -> int:
        if not tok.text.isdigit():
            raise self.error(f"constant {tok.text} is not allowed: the search space's constants "
                             f"are the whole numbers 1, 2, 3 (larger whole numbers up to "
                             f"{MAX_INTEGER} are built from them)", tok.pos)
        n = int(tok.text)
        if not 1 <= n <= MAX_INTEGER:
            raise self.error(f"constant {n} is not allowed: whole numbers from 1 to "
                             f"{MAX_INTEGER} only (the search space's constants are 1, 2, 3)",
                             tok.pos)
        return self.integer(n, tok.pos)

    def integer(self, n: int, pos: int) -> int:
        """A whole number built from the constants 1, 2, 3 (12 → 3*(2*2), 5 → 2*2 + 1)."""
        return integer(self.builder, n)

    def name(self) -> int:
        tok = self.tok
        self.k += 1
        code = _FUNCTIONS.get(tok.text.lower())
        if code is not None:
            if ops.OPS[code].arity == 1 and self.tok.kind in ("num", "name", "σ", "√"):
                # the paper's "log σ(x)": a unary function applied without parentheses
                return self.node(ops.OPS[code].name, self.power(), pos=tok.pos)
            if self.tok.kind != "(":
                raise self.error(f"expected '(' after the operator name {tok.text!r}, found "
                                 f"{self.describe(self.tok)}")
            return self.call(ops.OPS[code].name, tok)
        if tok.text in _INPUT_ALIASES:
            return self.input(_INPUT_ALIASES[tok.text], tok)
        raise self.error(self.unknown_name(tok.text), tok.pos)

    def unknown_name(self, name: str) -> str:
        hint = ""
        if name.lower() in self.branch.inputs:
            hint = f" (did you mean {name.lower()!r}?)"
        elif name.lower() in _FUNCTIONS:
            hint = f" (did you mean {ops.OPS[_FUNCTIONS[name.lower()]].name!r}?)"
        ops_list = ", ".join(ops.OPS[c].name for c in self.branch.operators)
        return (f"unknown name {name!r}{hint}; expected an input of the {self.branch.name} branch "
                f"({', '.join(self.branch.inputs)}), a constant (1, 2, 3) or an operator "
                f"({ops_list})")

    def input(self, expression: str, tok: Token, pos: int | None = None) -> int:
        """An input (or a release input defined by an expression such as Q = w*y)."""
        pos = tok.pos if pos is None else pos
        if expression == "w*y":
            return self.node("mul", self.input("w", tok, pos), self.input("y", tok, pos), pos=pos)
        if expression == "1-y":
            return self.node("sub", self.integer(1, pos), self.input("y", tok, pos), pos=pos)
        if expression not in self.branch.inputs:
            raise self.error(f"input {tok.text!r} is not an input of the {self.branch.name} "
                             f"branch (its inputs are {', '.join(self.branch.inputs)})", pos)
        return self.builder.add(ops.code(expression))

    def call(self, name: str, name_tok: Token) -> int:
        opening = self.expect("(", f"'(' after {name_tok.text!r}")
        args = [self.expr()]
        while self.tok.kind == ",":
            self.k += 1
            args.append(self.expr())
        self.close(opening)
        arity = ops.BY_NAME[name].arity
        if len(args) != arity:
            raise self.error(f"{name_tok.text} takes {arity} argument{'s' * (arity > 1)}, "
                             f"got {len(args)}", name_tok.pos)
        return self.node(name, *args, pos=name_tok.pos)


def parse_graph(text: str, branch: str | branches.Branch,
                max_nodes: int | None = DEFAULT_MAX_NODES) -> tuple[Node, ...]:
    """Parse formula text into a compact graph (see :mod:`jaxloss.space.graph`).

    Args:
      text: the formula, in the paper's or the release's notation.
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``: decides the inputs and operators allowed.
      max_nodes: the capacity; a formula that needs more graph nodes raises FormulaError.
        None for no limit.
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be text, got {type(text).__name__}")
    parser = _Parser(text, branches.get(branch))
    root = parser.parse()
    graph = parser.builder.graph(root)
    if max_nodes is not None and len(graph) > max_nodes:
        raise FormulaError(f"the formula needs {len(graph)} graph nodes but the capacity is "
                           f"{max_nodes}; shorten it or allow more nodes (max_nodes=...)", text)
    return graph

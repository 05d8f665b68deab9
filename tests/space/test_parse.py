"""Formula text: both notations, round trips, structural identity, and errors."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxloss
from jaxloss import LIBRARY, RELEASE_FORMS, FormulaError, parse
from jaxloss.space import ops


def test_paper_and_prefix_notation_give_the_same_loss():
    paper = parse("-dot((1+sin(w))*y, log(softmax(x)))", "cls")
    prefix = parse("Neg(Dot(Mul(Y,Add(1,Sin(Z))),Log(Softmax(X))))", "cls")
    assert paper == prefix  # y*(1+sin w) vs (1+sin w)*y: commutative, same structural hash
    assert paper.key == prefix.key


def test_square_brackets_and_unicode_operators():
    a = parse("-[w·y·(1 + erf(σ(1 − y)))·log σ(x)]", "cls_binary")
    b = parse("-(w*y*(1 + erf(sigmoid(1 - y)))*log(sigmoid(x)))", "cls_binary")
    assert a == b


def test_release_inputs_map_to_expressions():
    assert parse("Q", "cls_binary") == parse("w*y", "cls_binary")
    assert parse("NY", "cls_binary") == parse("1 - y", "cls_binary")
    assert parse("PY", "cls_binary") == parse("y", "cls_binary")
    assert parse("Z", "cls") == parse("w", "cls")
    assert parse("Add(I,Div(U,E))", "reg") == parse("i + u/e", "reg")


def test_implicit_products_powers_and_numbers():
    assert parse("3eu", "reg") == parse("3*e*u", "reg")
    assert parse("u²", "reg") == parse("u*u", "reg")
    assert parse("u^3", "reg") == parse("u*u*u", "reg")
    assert parse("12e", "reg") == parse("3*(2*2)*e", "reg")
    assert str(parse("12*e + 5", "reg")) == "12 * e + 5"
    assert parse("2(x + 1)", "cls_binary") == parse("2*(x + 1)", "cls_binary")
    assert parse("|x - y|", "cls_binary") == parse("abs(x - y)", "cls_binary")
    assert parse("√(i/u)", "reg") == parse("sqrt(i/u)", "reg")


def test_commutative_operands_share_a_hash_but_print_as_written():
    a, b = parse("x + sigmoid(w)", "cls_binary"), parse("sigmoid(w) + x", "cls_binary")
    assert a == b and hash(a) == hash(b)
    assert str(a) != str(b)
    assert str(a.canonical()) == str(b.canonical())
    assert parse("x - w", "cls_binary") != parse("w - x", "cls_binary")


def test_shared_subexpressions_are_stored_once():
    loss = parse("sigmoid(x) * sigmoid(x) + sigmoid(x)", "cls_binary")
    assert loss.size == 4  # x, sigmoid(x), mul, add


@pytest.mark.parametrize("name", list(LIBRARY))
def test_library_round_trips_through_text_prefix_and_canonical_form(name):
    loss = LIBRARY[name]
    assert parse(str(loss), loss.branch).graph == loss.graph
    assert parse(loss.prefix(), loss.branch) == loss
    assert parse(str(loss.canonical()), loss.branch) == loss
    assert loss.latex() and loss.sympy() is not None


def test_published_release_forms_parse():
    assert set(RELEASE_FORMS) == {"CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg",
                                  "CSE-Autoloss-B_cls", "CSE-Autoloss-B_reg"}
    assert RELEASE_FORMS["CSE-Autoloss-A_cls"] == LIBRARY["CSE-Autoloss-A_cls"]


def test_sympy_of_b_reg_is_the_papers_rational_function():
    import sympy as sp

    e, i, u = (sp.Symbol(n, real=True) for n in "eiu")
    paper = (3 * e * u + 12 * e + 3 * i + 3 * u + 18) / (-3 * e * u + i * u + u ** 2 - 15 * e + 5 * i + 5 * u)
    assert sp.simplify(RELEASE_FORMS["CSE-Autoloss-B_reg"].sympy() - paper) == 0
    assert sp.simplify(LIBRARY["CSE-Autoloss-B_reg"].sympy() - paper) == 0


@pytest.mark.parametrize("text, branch, position, words", [
    ("foo(x)", "cls", 0, "unknown name 'foo'"),
    ("log(x, y)", "cls", 0, "takes 1 argument"),
    ("add(x)", "cls", 0, "takes 2 arguments"),
    ("(x + y", "cls", 6, "expected ')'"),
    ("[x + y)", "cls", 6, None),
    ("x + y)", "cls", 5, "unbalanced"),
    ("x + ", "cls", 3, "unexpected end"),
    ("e + x", "cls", 0, "not an input of the cls branch"),
    ("x + u", "cls_binary", 4, "not an input"),
    ("softmax(x)", "cls_binary", 0, "not in the cls_binary branch's operator set"),
    ("erf(i)", "reg", 0, "not in the reg branch"),
    ("x + 0.5", "cls", 4, "whole numbers"),
    ("x ^ y", "cls", 4, "exponent"),
    ("x ^ 20", "cls", 4, "out of range"),
    ("x $ y", "cls", 2, "unexpected character"),
    ("", "cls", 0, "empty formula"),
    ("dot x", "cls", 4, "expected '('"),
    ("exp", "cls", 3, "expected '('"),
    ("X + W", "cls", 4, "did you mean 'w'"),
    ("|x + y", "cls_binary", 6, "'|'"),
])
def test_bad_text_raises_formula_error_with_position(text, branch, position, words):
    with pytest.raises(FormulaError) as info:
        parse(text, branch)
    assert info.value.position == position
    if words:
        assert words in str(info.value)
    assert "^" in str(info.value)  # the caret display


def test_unknown_branch_and_capacity_errors():
    with pytest.raises(ValueError, match="unknown branch"):
        parse("x", "segmentation")
    with pytest.raises(FormulaError, match="capacity is 5"):
        parse("-dot(w*y, log(softmax(x)))", "cls", max_nodes=5)
    with pytest.raises(FormulaError, match="must be text"):
        parse(3, "cls")  # type: ignore[arg-type]


# -- property tests -------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits + "+-*/^()[]|,. ·σ√²'" + "xyw"
_WORDS = ["x", "y", "w", "i", "u", "e", "Q", "NY", "sin", "log", "exp", "dot", "softmax", "Add",
          "Mul", "Neg", "(", ")", "[", "]", ",", "+", "-", "*", "/", "^", "2", "3", "12", "|"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(alphabet=_ALPHABET, max_size=40),
                      st.lists(st.sampled_from(_WORDS), max_size=25).map(" ".join)),
       branch=st.sampled_from(["cls", "cls_binary", "reg"]))
def test_random_text_parses_or_raises_formula_error(text, branch):
    try:
        loss = parse(text, branch)
    except FormulaError as err:
        assert err.reason
        return
    # whatever parses prints back to the same structure
    assert parse(str(loss), branch, max_nodes=None) == loss


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), branch=st.sampled_from(["cls", "cls_binary", "reg"]),
       n_nodes=st.integers(1, 24))
def test_random_losses_round_trip_through_text(seed, branch, n_nodes):
    loss = jaxloss.sample(branch, 1, seed=seed, max_nodes=n_nodes, min_nodes=n_nodes)[0]
    assert loss.size == n_nodes
    again = parse(str(loss), branch, max_nodes=None)
    assert again.key == loss.key
    assert again.graph == loss.graph
    assert parse(loss.prefix(), branch, max_nodes=None) == loss


def test_every_operator_has_a_text_form_the_parser_reads():
    for code in ops.OPERATORS:
        spec = ops.OPS[code]
        branch = "cls" if spec.class_wise else "cls_binary"
        args = ", ".join(["x", "w"][: spec.arity])
        loss = parse(f"{spec.name}({args})", branch)
        assert loss.graph[-1][0] == code
        assert parse(f"{spec.release}({args.replace(' ', '')})", branch) == loss

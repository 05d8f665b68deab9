"""Known losses: the defaults detectors ship with, the paper's initial losses, and the four
published CSE-Autoloss losses, each with where it comes from.

Choices worth knowing:

* **FL** is the focal loss with γ = 2 *without* its α balance: as in the release, α (0.25 for
  positives, 0.75 for negatives) is applied outside the searched formula, by the detector head.
* **FLI**: the paper's extracted text, ``-w[y'(1-σ(x'))·log σ(x') + (1-y')·σ(x')·log(1-σ(x'))]``, lost
  the exponents of the modulating factors. We restore γ = 2 on both, so that FLI = w · FL exactly
  as CEI = w · CE, and FLI reduces to FL (the loss it is compared with in Table 4) at w = 1. The
  other reading, exponent 1 on both factors, would make FLI a different loss from FL even at w = 1,
  contradicting the paper's description of FLI as "FL with IoU".
* The published losses are stored in the paper's notation; :data:`RELEASE_FORMS` keeps the release's
  prefix strings, which evaluate to the same values (tested).
* ``erf`` and ``gd`` in CSE-Autoloss-B_cls are the re-scaled Serf and Sgdf of the release (as every
  S-curve in jaxloss, see :mod:`jaxloss.space.ops`).

Run ``python -m jaxloss.filters.library_check`` for a check of every entry (parse, both notations, values).
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxloss.space.loss import Loss


@dataclass(frozen=True)
class Entry:
    """A known loss: name, branch, formula in the paper's notation, and its source."""

    name: str
    branch: str
    formula: str
    source: str
    release: str | None = None  # the release's prefix string, for the published losses


ENTRIES: tuple[Entry, ...] = (
    Entry("CE", "cls", "-dot(y, log(softmax(x)))",
          "softmax cross-entropy, Faster R-CNN's default (MMDetection CrossEntropyLoss)"),
    Entry("CEI", "cls", "-dot(w*y, log(softmax(x)))",
          "CSE-Autoloss paper §3.1: CE weighted by the IoU, the initial loss L_I of two-stage "
          "searches"),
    Entry("CSE-Autoloss-A_cls", "cls", "-dot((1 + sin(w))*y, log(softmax(x)))",
          "CSE-Autoloss paper §4.1, searched for Faster R-CNN",
          "Neg(Dot(Mul(Y,Add(1,Sin(Z))),Log(Softmax(X))))"),
    Entry("BCE", "cls_binary", "-[y*log(sigmoid(x)) + (1 - y)*log(1 - sigmoid(x))]",
          "binary cross-entropy on a sigmoid score (focal loss with γ = 0)"),
    Entry("FL", "cls_binary",
          "-[y*(1 - sigmoid(x))^2*log(sigmoid(x)) + (1 - y)*sigmoid(x)^2*log(1 - sigmoid(x))]",
          "focal loss, γ = 2, α applied outside (Lin et al. 2017; FCOS/ATSS default)"),
    Entry("FLI", "cls_binary",
          "-w*[y*(1 - sigmoid(x))^2*log(sigmoid(x)) + (1 - y)*sigmoid(x)^2*log(1 - sigmoid(x))]",
          "CSE-Autoloss paper §3.1: FL weighted by the IoU, the initial loss L_I of one-stage "
          "searches (exponent γ = 2 restored, see the module docs)"),
    Entry("CSE-Autoloss-B_cls", "cls_binary",
          "-[w*y*(1 + erf(sigmoid(1 - y)))*log(sigmoid(x)) + (gd(x) - w*y)*(sigmoid(x) - w*y)"
          "*log(1 - sigmoid(x))]",
          "CSE-Autoloss paper §4.1, searched for FCOS",
          "Neg(Add(Mul(Q,Mul(Add(1,Serf(Sig(NY))),Log(Sig(X)))),Mul(Add(Sgdf(X),Neg(Q)),"
          "Mul(Add(Add(1,Neg(Q)),Neg(Add(1,Neg(Sig(X))))),Log(Add(1,Neg(Sig(X))))))))"),
    Entry("IoU", "reg", "1 - i/u", "IoU loss (Yu et al. 2016)"),
    Entry("GIoU", "reg", "1 - i/u + (e - u)/e",
          "GIoU loss (Rezatofighi et al. 2019), the initial loss L_I of regression searches"),
    Entry("CSE-Autoloss-A_reg", "reg", "(1 - i/u) + (1 - (i + 2)/e)",
          "CSE-Autoloss paper §4.1, searched for Faster R-CNN",
          "Add(1,Neg(Add(Div(I,U),Neg(Div(Add(E,Neg(Add(I,2))),E)))))"),
    Entry("CSE-Autoloss-B_reg", "reg",
          "(3eu + 12e + 3i + 3u + 18) / (-3eu + iu + u² - 15e + 5i + 5u)",
          "CSE-Autoloss paper §4.1, searched for FCOS",
          "Neg(Div(Add(Div(Neg(Add(Neg(E),Add(1,I))),Neg(Add(3,Add(2,U)))),Add(Div(E,E),"
          "Div(Neg(E),Neg(1)))),Neg(Add(Div(Neg(Add(U,Div(I,1))),Neg(3)),Neg(E)))))"),
)

LIBRARY: dict[str, Loss] = {e.name: Loss.parse(e.formula, e.branch, name=e.name) for e in ENTRIES}
"""Known losses by name (paper notation), e.g. ``LIBRARY["CSE-Autoloss-A_cls"]``."""

RELEASE_FORMS: dict[str, Loss] = {
    e.name: Loss.parse(e.release, e.branch, name=e.name) for e in ENTRIES if e.release}
"""The published losses parsed from the release's prefix strings (same values as LIBRARY)."""

INITIAL_LOSS = {"cls": "CEI", "cls_binary": "FLI", "reg": "GIoU"}
"""The paper's predefined initial loss L_I of each branch."""


def entry(name: str) -> Entry:
    for e in ENTRIES:
        if e.name == name:
            return e
    raise KeyError(f"no library loss called {name!r}; known: {', '.join(LIBRARY)}")


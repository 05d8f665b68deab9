"""jaxloss: loss-function search for object detection (CSE-Autoloss) on a batched JAX engine.

The public API (see ../README.md):

* :func:`parse` — a :class:`Loss` from the paper's or the release's notation;
* :class:`Loss` — ``str()``, ``.latex()``, ``.sympy()``, ``.prefix()``, ``.branch``, structural
  ``.key`` / ``==`` / ``hash()``, ``.canonical()``;
* :data:`LIBRARY` — the known losses by name;
* :func:`evaluate` — per-sample values of many losses in one compiled call;
* :func:`check` — validity and convergence-property verdicts (and, optionally, the mini
  optimization simulation) for a whole population in one compiled call;
* :func:`simulate` — the mini optimization simulation alone; :func:`funnel` — stage statistics;
* :func:`sample` — random valid genomes; :class:`Population` — a batch of genomes;
* :class:`FormulaError` — what bad formula text raises;
* :func:`use_cpu_cores` — run the engine on every CPU core (call it before any computation);
* :class:`LossEvolution` — the CSE evolution, and :class:`RandomSearch` — random search, as evosax
  ask/tell algorithms whose solutions are genomes: ``ask`` returns a :class:`Population`, ``tell``
  takes one (loaded on first use: evosax computes with JAX when imported).

The engine never imports torch; the PyTorch side lives in the ``bridge`` package.
"""

from jaxloss.engine.devices import use_cpu_cores
from jaxloss.engine.evaluate import evaluate
from jaxloss.errors import FormulaError
from jaxloss.evolution.tune import TunedLoss, tune_constants
from jaxloss.filters.checks import REASONS, Verdict, Verdicts, check
from jaxloss.filters.funnel import funnel
from jaxloss.filters.minisim import simulate
from jaxloss.genome.population import Population, as_population
from jaxloss.genome.sample import sample
from jaxloss.space.branches import BRANCHES, Branch
from jaxloss.space.guards import GUARDS
from jaxloss.space.library import INITIAL_LOSS, LIBRARY, RELEASE_FORMS
from jaxloss.space.loss import Loss
from jaxloss.space.parse import DEFAULT_MAX_NODES

__version__ = "0.1.0"


def parse(text: str, branch: str, max_nodes: int | None = DEFAULT_MAX_NODES) -> Loss:
    """A :class:`Loss` from formula text.

    Args:
      text: the paper's notation (``-dot((1+sin(w))*y, log(softmax(x)))``) or the release's prefix
        notation (``Neg(Dot(Mul(Y,Add(1,Sin(Z))),Log(Softmax(X))))``).
      branch: ``"cls"``, ``"cls_binary"`` or ``"reg"``.
      max_nodes: capacity: a formula needing more graph nodes raises FormulaError (None: no limit).

    Raises:
      FormulaError: naming the position and what was expected.
    """
    return Loss.parse(text, branch, max_nodes)


_STRATEGY = {"LossEvolution": "cse", "RandomSearch": "random"}  # name: jaxloss.evolution module


def __getattr__(name: str):
    # the strategies import evosax, which computes with JAX at import: load them on first use so
    # that `import jaxloss` leaves the choice of CPU devices open (jaxloss.use_cpu_cores)
    if name in _STRATEGY:
        import importlib

        return getattr(importlib.import_module(f"jaxloss.evolution.{_STRATEGY[name]}"), name)
    raise AttributeError(f"module 'jaxloss' has no attribute {name!r}")


__all__ = [
    "BRANCHES", "Branch", "FormulaError", "GUARDS", "INITIAL_LOSS", "LIBRARY", "Loss",
    "LossEvolution", "Population", "REASONS", "RELEASE_FORMS", "RandomSearch", "TunedLoss",
    "Verdict", "Verdicts", "as_population", "check", "evaluate", "funnel", "parse", "sample",
    "simulate", "tune_constants", "use_cpu_cores",
]

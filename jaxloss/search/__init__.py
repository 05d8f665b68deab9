"""``python -m jaxloss.search``: the CSE-Autoloss search (paper §3.2, Algorithm 1).

* :func:`run_search` — run or resume a search from :class:`Settings`;
* :mod:`jaxloss.search.stages` — the funnel's stages behind one evaluator interface.
"""

from jaxloss.search.settings import Settings, SettingsError

__all__ = ["Search", "Settings", "SettingsError", "run_search"]


def __getattr__(name: str):
    # run (and evosax, which computes with JAX when imported) loads on first use, so that the
    # command line can choose the number of CPU devices before JAX starts (jaxloss.devices)
    if name in ("Search", "run_search"):
        from jaxloss.search import run

        return getattr(run, name)
    raise AttributeError(f"module 'jaxloss.search' has no attribute {name!r}")

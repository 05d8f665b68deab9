"""``python -m jaxloss.search``: the CSE-Autoloss search (paper §3.2, Algorithm 1).

* :func:`run_search` — run or resume a search from :class:`Settings`;
* :mod:`jaxloss.search.stages` — the funnel's stages behind one evaluator interface.
"""

from jaxloss.search.run import Search, run_search
from jaxloss.search.settings import Settings, SettingsError

__all__ = ["Search", "Settings", "SettingsError", "run_search"]

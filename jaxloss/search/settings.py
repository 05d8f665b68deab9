"""Search settings: defaults, validation with clear messages, and loading from a config file.

:class:`Settings` is the search's own settings (:class:`SearchSettings`) and, after them, those of
the detector plugin: the object registered as ``detector`` in the ``jaxloss.stages`` entry-point
group (the ``bridge`` package; jaxloss never imports it by name). The plugin provides:

* ``settings_class`` — a frozen dataclass whose fields, each with its default, become settings of
  the search: attributes of :class:`Settings`, names of a ``--config`` file, keys of a run's
  ``settings.json`` and of ``report.json``;
* ``validate(values)`` — raises :class:`SettingsError` for a bad value of those fields (name →
  value);
* ``title`` and ``add_arguments(group)`` — their command-line flags as one argparse group (each
  flag stores into its setting's name, None when left out);
* ``generations`` — the default number of generations of a search with its stages;
* calling it gives the detector stages (:func:`jaxloss.search.stages.load_detector_stages`).

Without the plugin (or when it fails to load) :class:`Settings` is :class:`SearchSettings`, and a
search runs without detector stages (``--no-detector``).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from jaxloss.errors import FormulaError, InputError
from jaxloss.space import branches
from jaxloss.space.library import INITIAL_LOSS, LIBRARY
from jaxloss.space.resolve import as_loss

STRATEGIES = ("cse", "vanilla", "random")
GENERATIONS = 5
"""Default generations without the detector stages (with them: the detector plugin's
``generations``)."""
PLUGIN_GROUP = "jaxloss.stages"
"""The entry-point group in which jaxloss finds the detector plugin (under the name ``detector``)."""


class SettingsError(InputError):
    """A setting with a bad value; the message names the setting and what is allowed."""


def require(ok: bool, name: str, what: str, value) -> None:
    """Raise :class:`SettingsError` ``--NAME: WHAT, got VALUE`` unless ``ok`` (every check of a
    setting's value words its message so, the plugin's included)."""
    if not ok:
        raise SettingsError(f"--{name.replace('_', '-')}: {what}, got {value!r}")


@dataclass(frozen=True)
class SearchSettings:
    """The search's own settings (see ``python -m jaxloss.search --help``); :class:`Settings`
    adds the detector plugin's.

    ``strategy``: ``cse`` (the paper's funnel: validity, property checks, simulation, detectors),
    ``vanilla`` (evolution with the validity check only before the scoring stage), ``random``
    (fresh random genomes every generation, the full funnel).
    """

    branch: str = "cls_binary"
    population: int = 2000
    generations: int | None = None  # None: the detector plugin's with its stages, else 5
    parents: int | None = None
    top_k: int = 4
    verify_k: int | None = None
    p_crossover: float = 0.5
    p_mutation: float = 0.5
    tournament_size: int = 3
    seed: int = 0
    initial: str | None = None
    strategy: str = "cse"
    capacity: int = 24
    property_checks: bool = True
    simulation: bool = True
    detector: bool = True
    verify: bool = True
    archive_size: int = 20
    final_k: int = 3
    final_seeds: int = 3
    tune_constants: int = 0
    tune_generations: int = 20
    out: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def initial_formula(self) -> str:
        """The initial loss L_I as formula text (the branch's library default if not given)."""
        return self.initial or str(LIBRARY[INITIAL_LOSS[self.branch]])

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.branch}-{self.strategy}-seed{self.seed}")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d


def _load_detector_plugin() -> tuple[object | None, str | None]:
    """(the detector plugin, None), (None, why it failed to load), or (None, None) when none is
    installed."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == "detector"]
    if not found:
        return None, None
    try:
        plugin = found[0].load()
        if plugin_fields(plugin):
            missing = [name for name in ("validate", "title", "add_arguments")
                       if not hasattr(plugin, name)]
            if missing:
                raise TypeError(f"{plugin!r} has settings but no {', '.join(missing)}")
    except Exception as err:  # noqa: BLE001 - kept, and said where the plugin is needed
        return None, f"{type(err).__name__}: {err}"
    return plugin, None


def plugin_fields(plugin) -> tuple[dataclasses.Field, ...]:
    """The fields of a plugin's ``settings_class`` (none without one).

    Raises:
      TypeError: a field without a default, or one whose name the search's settings have.
    """
    settings_class = getattr(plugin, "settings_class", None) if plugin is not None else None
    if settings_class is None:
        return ()
    own = {f.name for f in dataclasses.fields(SearchSettings)}
    fields = dataclasses.fields(settings_class)
    for f in fields:
        if f.name in own:
            raise TypeError(f"{settings_class.__name__}.{f.name}: the search has a setting of "
                            "that name")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"{settings_class.__name__}.{f.name} has no default")
    return fields


def _with_plugin_settings(base: type, plugin) -> type:
    """``base`` with the plugin's settings after its own (in the plugin's order), as ``Settings``."""
    fields = plugin_fields(plugin)
    if not fields:
        return base
    cls = dataclasses.make_dataclass(
        "Settings", [(f.name, f.type, dataclasses.field(default=f.default,
                                                        default_factory=f.default_factory))
                     for f in fields], bases=(base,), frozen=True)
    cls.__module__ = __name__
    plugin_class = plugin.settings_class
    cls.__doc__ = ("Everything that decides a search: the search's own settings "
                   "(:class:`SearchSettings`), then the detector plugin's (:class:`"
                   f"{plugin_class.__module__}.{plugin_class.__qualname__}`).")
    return cls


DETECTOR_PLUGIN, DETECTOR_PLUGIN_ERROR = _load_detector_plugin()
"""The detector plugin (None when it is not installed, or failed to load: then the error)."""
Settings = _with_plugin_settings(SearchSettings, DETECTOR_PLUGIN)
"""Everything that decides a search: :class:`SearchSettings`, then the detector plugin's
settings (see the module's docstring)."""


def setting_names() -> frozenset[str]:
    """The names a config file or a run folder's settings.json may hold (Settings' fields)."""
    return frozenset(f.name for f in dataclasses.fields(Settings)) - {"extra"}


def validate(s: Settings) -> Settings:
    """Check every value (filling in defaults that depend on others); raise SettingsError saying
    which setting is wrong and why.

    Defaults that depend on others: ``parents`` (P) is ``top_k`` (K) with the detector stages, the
    paper's P <= K (only the top-K of a generation get a proxy fitness, and only measured
    candidates are parents); without them a tenth of the population, 2 to 100. ``verify_k`` is
    3 K (the candidates trained on D_verify, of which the best K by D_verify AP go on).
    ``generations`` is the detector plugin's ``generations`` with the detector stages, else
    :data:`GENERATIONS`.

    The detector plugin's settings are checked by the plugin (also with ``detector`` off, so that
    a bad value is found before it is used); without the plugin, ``detector`` on is not an error
    here: the search says so when it needs the stages.
    """
    if s.parents is None and isinstance(s.population, int) and isinstance(s.top_k, int):
        parents = s.top_k if s.detector else min(100, max(2, s.population // 10))
        s = dataclasses.replace(s, parents=min(parents, s.population))
    if s.generations is None:
        with_stages = s.detector and DETECTOR_PLUGIN is not None
        s = dataclasses.replace(s, generations=getattr(DETECTOR_PLUGIN, "generations",
                                                       GENERATIONS) if with_stages
                                else GENERATIONS)
    if s.verify_k is None and isinstance(s.top_k, int):
        s = dataclasses.replace(s, verify_k=3 * s.top_k)

    def need(cond, name, what):
        require(cond, name, what, getattr(s, name))

    try:
        branches.get(s.branch)
    except ValueError:
        raise SettingsError(f"--branch: choose one of {', '.join(branches.BRANCHES)}, "
                            f"got {s.branch!r}") from None
    need(s.strategy in STRATEGIES, "strategy", f"choose one of {', '.join(STRATEGIES)}")
    need(isinstance(s.population, int) and s.population >= 2, "population",
         "a whole number >= 2")
    need(isinstance(s.generations, int) and s.generations >= 1, "generations",
         "a whole number >= 1")
    need(isinstance(s.parents, int) and 1 <= s.parents <= s.population, "parents",
         f"a whole number from 1 to the population ({s.population})")
    need(isinstance(s.top_k, int) and s.top_k >= 1, "top_k", "a whole number >= 1")
    need(isinstance(s.verify_k, int) and s.verify_k >= s.top_k, "verify_k",
         f"a whole number >= --top-k ({s.top_k}): the proxy task takes the best top-K of the "
         "candidates trained on D_verify")
    for name in ("p_crossover", "p_mutation"):
        value = getattr(s, name)
        need(isinstance(value, (int, float)) and 0.0 <= value <= 1.0, name,
             "a probability between 0 and 1")
    need(isinstance(s.tournament_size, int) and s.tournament_size >= 1, "tournament_size",
         "a whole number >= 1")
    need(isinstance(s.capacity, int) and 4 <= s.capacity <= 64, "capacity",
         "a whole number from 4 to 64 (graph nodes per candidate)")
    need(isinstance(s.archive_size, int) and s.archive_size >= 1, "archive_size",
         "a whole number >= 1")
    need(isinstance(s.seed, int) and s.seed >= 0, "seed", "a whole number >= 0")
    need(isinstance(s.final_k, int) and 0 <= s.final_k <= s.archive_size, "final_k",
         f"a whole number from 0 (off) to archive_size ({s.archive_size})")
    need(isinstance(s.final_seeds, int) and s.final_seeds >= 2, "final_seeds",
         "a whole number >= 2 (a spread needs two measurements)")
    need(isinstance(s.tune_constants, int) and 0 <= s.tune_constants <= s.archive_size,
         "tune_constants", f"a whole number from 0 to archive_size ({s.archive_size})")
    need(isinstance(s.tune_generations, int) and s.tune_generations >= 1, "tune_generations",
         "a whole number >= 1")
    fields = plugin_fields(DETECTOR_PLUGIN)
    if fields:
        DETECTOR_PLUGIN.validate({f.name: getattr(s, f.name) for f in fields})
    if not (s.simulation or s.detector):
        raise SettingsError("nothing ranks the candidates: the simulation and the detector "
                            "stages are both off; enable one of them")
    try:
        as_loss(s.initial_formula, s.branch, max_nodes=s.capacity)
    except FormulaError as err:
        raise SettingsError(f"--initial: {err}") from None
    return s


def load_config(path: str | Path) -> dict:
    """Settings from a TOML or JSON file: the same names as the command-line flags (with
    underscores), e.g. ``population = 500`` or ``{"population": 500}``."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"--config: no such file: {path}")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix != ".json" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise SettingsError(f"--config: {path} is not valid "
                            f"{'JSON' if path.suffix == '.json' else 'TOML'}: {err}") from None
    known = setting_names()
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"--config: {path} has unknown settings {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
    return data

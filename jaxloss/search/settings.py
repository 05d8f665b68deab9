"""Search settings: defaults, validation with clear messages, and loading from a config file."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from jaxloss.errors import FormulaError, InputError
from jaxloss.space import branches
from jaxloss.space.library import INITIAL_LOSS, LIBRARY
from jaxloss.space.parse import parse_graph

STRATEGIES = ("cse", "vanilla", "random")
DETECTOR_GENERATIONS = 3
"""Default generations with the detector stages: with 1,200-step proxy trainings, 3 generations,
L_I and the final fresh-seed re-measurement take 14.3 minutes on the 2-core CPU machine; each more
generation adds about 2.4 minutes, so 5 would leave under a minute of the 20-minute budget."""


class SettingsError(InputError):
    """A setting with a bad value; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class Settings:
    """Everything that decides a search (see ``python -m jaxloss.search --help``).

    ``strategy``: ``cse`` (the paper's funnel: validity, property checks, simulation, detectors),
    ``vanilla`` (evolution with the validity check only before the scoring stage), ``random``
    (fresh random genomes every generation, the full funnel).
    """

    branch: str = "cls_binary"
    population: int = 2000
    generations: int | None = None  # None: 3 with the detector stages, else 5
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
    # detector stages (used by the plugin that provides them, the bridge package)
    detector_config: str | None = None
    data: str = "embedded"
    images: str | None = None
    verify_iters: int = 40
    verify_min_images: int = 8
    proxy_epochs: int = 1
    proxy_val: int | None = None
    batch_size: int | None = None
    executor: str = "local"
    workers: int | None = None  # None: one per GPU (group), else one per core, at most 4
    gpus_per_training: int | None = None  # GPUs of one node per training (None: 1, or CPU)
    ray_address: str | None = None
    train_timeout: float = 1800.0
    explode_factor: float = 1000.0
    detector_task: str | None = None  # "module:function" training one candidate (tests, custom trainers)
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
    ``generations`` is :data:`DETECTOR_GENERATIONS` with the detector stages, else 5.
    """
    if s.parents is None and isinstance(s.population, int) and isinstance(s.top_k, int):
        parents = s.top_k if s.detector else min(100, max(2, s.population // 10))
        s = dataclasses.replace(s, parents=min(parents, s.population))
    if s.generations is None:
        s = dataclasses.replace(s, generations=DETECTOR_GENERATIONS if s.detector else 5)
    if s.verify_k is None and isinstance(s.top_k, int):
        s = dataclasses.replace(s, verify_k=3 * s.top_k)
    def need(cond, name, what):
        if not cond:
            raise SettingsError(f"--{name.replace('_', '-')}: {what}, got {getattr(s, name)!r}")

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
    need(s.executor in ("local", "ray"), "executor", "local or ray")
    need(s.workers is None or (isinstance(s.workers, int) and not isinstance(s.workers, bool)
                               and s.workers >= 1), "workers", "a whole number >= 1")
    need(s.gpus_per_training is None or (isinstance(s.gpus_per_training, int)
                                         and not isinstance(s.gpus_per_training, bool)
                                         and s.gpus_per_training >= 1), "gpus_per_training",
         "a whole number >= 1: the GPUs of one node each training spans (e.g. 8, for the paper's "
         "8 GPUs x 2 images); leave it out for one GPU per training where there are GPUs and CPU "
         "trainings where there are none")
    need(isinstance(s.verify_iters, int) and s.verify_iters >= 1, "verify_iters",
         "a whole number >= 1")
    need(isinstance(s.verify_min_images, int) and s.verify_min_images >= 1, "verify_min_images",
         "a whole number >= 1")
    need(isinstance(s.proxy_epochs, int) and s.proxy_epochs >= 1, "proxy_epochs",
         "a whole number >= 1")
    need(s.proxy_val is None or (isinstance(s.proxy_val, int) and s.proxy_val >= 1), "proxy_val",
         "a whole number >= 1 (images held out of the training set)")
    need(s.batch_size is None or (isinstance(s.batch_size, int) and s.batch_size >= 1),
         "batch_size", "a whole number >= 1")
    need(isinstance(s.train_timeout, (int, float)) and s.train_timeout > 0, "train_timeout",
         "seconds > 0")
    need(isinstance(s.explode_factor, (int, float)) and s.explode_factor > 1, "explode_factor",
         "a factor > 1")
    if not (s.simulation or s.detector):
        raise SettingsError("nothing ranks the candidates: the simulation and the detector "
                            "stages are both off; enable one of them")
    try:
        parse_graph(s.initial_formula, s.branch, s.capacity)
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

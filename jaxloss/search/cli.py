"""Command line of the search: ``python -m jaxloss.search [options]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxloss.errors import InputError, Interrupted
from jaxloss.search.settings import (
    DETECTOR_PLUGIN,
    DETECTOR_PLUGIN_ERROR,
    GENERATIONS,
    STRATEGIES,
    Settings,
    SettingsError,
    load_config,
    plugin_fields,
    setting_names,
    validate,
)

DESCRIPTION = """\
Search for a detection loss with CSE-Autoloss (ICLR 2021): evolve candidate losses from an initial
loss, judge each generation with the convergence-simulation funnel (validity -> convergence
properties -> mini optimization simulation -> [detector stages]), keep the best as parents, and
write a report. With no arguments: a complete search of the one-stage classification branch on the
embedded default.
"""

EPILOG = """\
examples:
  python -m jaxloss.search --no-detector --branch cls_binary --population 2000 --generations 5
  python -m jaxloss.search --branch reg --initial "1 - i/u + (e - u)/e" --out runs/reg
  python -m jaxloss.search --resume runs/reg
  python -m jaxloss.search --out runs/reg --restart   (start runs/reg over; old files kept)
  python -m jaxloss.search --config search.toml     (same names as the flags, e.g. population = 500)

output (RUN_DIR): report.md, report.json, fitness.png, candidates.jsonl (every candidate and its
stage outcomes), settings.json, checkpoints/ (one per generation; --resume continues from the last).

The initial loss L_I is measured first ("generation 0") exactly as every candidate, and is the first
parent: parents are only losses with a measured fitness. Ctrl-C or SIGTERM stops a run cleanly
(exit 130 / 143); --resume continues it from the last finished generation.
"""


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m jaxloss.search", description=DESCRIPTION,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--branch", choices=["cls", "cls_binary", "reg"],
                   help=f"loss to search: cls (softmax classification, two-stage detectors), "
                        f"cls_binary (sigmoid classification, one-stage), reg (box regression) "
                        f"(default {d.branch})")
    p.add_argument("--population", type=int, metavar="N",
                   help=f"candidates per generation (default {d.population:,}; the paper used "
                        "10,000 for classification, 1,000 for regression)")
    detector_generations = getattr(DETECTOR_PLUGIN, "generations", None)
    p.add_argument("--generations", type=int, metavar="E",
                   help=(f"generations (default {detector_generations} with the detector "
                         f"stages, {GENERATIONS} without)" if detector_generations is not None
                         else f"generations (default {GENERATIONS})"))
    p.add_argument("--parents", type=int, metavar="P",
                   help="P: the best measured losses kept as parents of the next generation (this "
                        "generation's and the previous parents: a (mu + lambda) selection); only "
                        "losses with a fitness are parents (default: K with the detector stages, "
                        "the paper's P <= K; without them a tenth of the population, 2 to 100)")
    p.add_argument("--top-k", type=int, metavar="K",
                   help="K: candidates per generation trained on the proxy task, the best by "
                        f"D_verify AP (default {d.top_k})")
    p.add_argument("--verify-k", type=int, metavar="V",
                   help="candidates per generation trained on D_verify, the best by simulation "
                        "score (default 3 K)")
    p.add_argument("--p-crossover", type=float, metavar="P1",
                   help=f"probability that an offspring is a crossover of two parents (default {d.p_crossover})")
    p.add_argument("--p-mutation", type=float, metavar="P2",
                   help=f"probability that an offspring is mutated (default {d.p_mutation})")
    p.add_argument("--tournament-size", type=int, metavar="T",
                   help=f"parents drawn per tournament (default {d.tournament_size})")
    p.add_argument("--seed", type=int, help=f"the seed of every random choice (default {d.seed})")
    p.add_argument("--out", metavar="RUN_DIR",
                   help="run folder (default runs/<branch>-<strategy>-seed<seed>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint (its settings are used)")
    p.add_argument("--restart", action="store_true",
                   help="start over in a run folder (--out) that holds a run: its log, checkpoints "
                        "and report move to RUN_DIR/previous-<time>/ (its detector results are "
                        "reused); without it a new run refuses such a folder")
    p.add_argument("--initial", metavar="FORMULA",
                   help="initial loss L_I (default: CEI for cls, FLI for cls_binary, GIoU for reg)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="cse: the full funnel (default); vanilla: evolution with the validity check "
                        "only before scoring; random: random candidates every generation")
    p.add_argument("--capacity", type=int, metavar="C",
                   help=f"largest candidate in graph nodes (default {d.capacity})")
    p.add_argument("--no-property", dest="property_checks", action="store_false", default=None,
                   help="skip the convergence-property checks (ablation)")
    p.add_argument("--no-simulation", dest="simulation", action="store_false", default=None,
                   help="skip the mini optimization simulation (ablation)")
    p.add_argument("--no-detector", dest="detector", action="store_false", default=None,
                   help="JAX stages only: no detector training")
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                   help="skip the D_verify simulation: the best K by simulation score go "
                        "straight to the proxy task (ablation)")
    p.add_argument("--archive-size", type=int, metavar="A",
                   help=f"best distinct losses kept across generations (default {d.archive_size})")
    p.add_argument("--final-k", type=int, metavar="N",
                   help="after the last generation, measure the N best losses that train "
                        "distinctly (different gradients) and L_I again with --final-seeds "
                        "seeds the search never used: the search's result, with mean ± std and "
                        "the paired "
                        f"difference to L_I (default {d.final_k}; 0: off)")
    p.add_argument("--final-seeds", type=int, metavar="S",
                   help=f"fresh seeds of that final measurement (default {d.final_seeds})")
    p.add_argument("--tune-constants", type=int, metavar="N",
                   help="after the search, tune the numeric constants of the N best losses with "
                        "CMA-ES on the mini simulation's score (beyond the paper; default "
                        f"{d.tune_constants}: off)")
    p.add_argument("--tune-generations", type=int, metavar="G",
                   help=f"CMA-ES generations per tuned loss (default {d.tune_generations})")
    add_detector_arguments(p)
    p.add_argument("--config", metavar="FILE",
                   help="settings from a TOML or JSON file; flags given as well override it")
    p.add_argument("--cpu-devices", type=int, metavar="D",
                   help="CPU cores the candidate checks and simulation run on at once (default: "
                        "every core; results do not depend on it; may be given with --resume)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--compile-cache", metavar="DIR",
                       help="keep the compiled checks and simulation in DIR, so that the next run "
                            "(or --resume) loads them instead of compiling again (default: "
                            "$JAXLOSS_CACHE_DIR/jax, else ~/.cache/jaxloss/jax; a "
                            "JAX_COMPILATION_CACHE_DIR already set wins; may be given with --resume)")
    cache.add_argument("--no-compile-cache", action="store_true",
                       help="cache no compiled program (each run compiles everything)")
    return p


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """The detector stages' flags: the group the detector plugin fills in (its settings, their
    defaults and help are the plugin's); without the plugin, a group that says how to get it."""
    if plugin_fields(DETECTOR_PLUGIN):
        DETECTOR_PLUGIN.add_arguments(parser.add_argument_group(DETECTOR_PLUGIN.title))
        return
    why = (f"failed to load ({DETECTOR_PLUGIN_ERROR}): check the PyTorch/MMDetection install"
           if DETECTOR_PLUGIN_ERROR else "are not installed: install the bridge package "
           "(scripts/setup.sh does)")
    parser.add_argument_group("detector stages", f"the detector stages {why}; or run with "
                                                 "--no-detector")


def settings_from_args(args: argparse.Namespace) -> Settings:
    values = {}
    if args.config:
        values.update(load_config(args.config))
    for name in setting_names():
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return validate(Settings(**values))


RESUME_FLAGS = ("--resume", "--cpu-devices", "--compile-cache", "--no-compile-cache")
"""Flags that may go with --resume: they change how fast a run is computed, never its result."""


def stored_settings(path: Path) -> Settings:
    """The settings a run folder's ``settings.json`` holds, validated.

    Raises:
      SettingsError: the file is not JSON, holds names that are not settings, or bad values.
    """
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SettingsError(f"--resume: {path} cannot be read ({err}); it is written by the run "
                            "itself: restore it, or start a new run with --out") from err
    if not isinstance(stored, dict):
        raise SettingsError(f"--resume: {path} holds a {type(stored).__name__}, not the run's "
                            "settings object")
    unknown = sorted(set(stored) - setting_names())
    if unknown:
        raise SettingsError(f"--resume: {path} holds names that are not settings: "
                            f"{', '.join(unknown)}")
    return validate(Settings(**stored))


def main(argv=None, *, every_core_by_default: bool = False) -> int:
    """Run the command line. ``every_core_by_default``: without --cpu-devices, put the engine on
    every CPU core (``python -m jaxloss.search`` does; a program calling main() keeps the JAX
    devices it has, since they can only be chosen before JAX first computes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxloss.engine.devices import use_cpu_cores

    try:
        if args.cpu_devices is not None:
            use_cpu_cores(args.cpu_devices)
        elif every_core_by_default:
            use_cpu_cores(None, strict=False)
    except (RuntimeError, ValueError) as err:  # a count below 1, or JAX already running
        parser.error(str(err))
    if not args.no_compile_cache:
        from jaxloss.engine.compile_cache import use_compile_cache

        try:
            use_compile_cache(args.compile_cache)
        except OSError as err:
            parser.error(f"--compile-cache: {err}; give a folder this user can write to, or "
                         "--no-compile-cache")
    from jaxloss.search.run import run_search

    settings = None
    try:
        if args.resume:
            if args.restart:
                raise SettingsError("--restart starts a run over with the settings given (flags "
                                    "or --config, and --out): it does not go with --resume")
            given = [a for a in (argv if argv is not None else sys.argv[1:])
                     if a.startswith("--") and a.split("=")[0] not in RESUME_FLAGS]
            if given:
                raise SettingsError(f"--resume takes its settings from the run folder; do not "
                                    f"combine it with {', '.join(given)}")
            path = Path(args.resume) / "settings.json"
            if not path.is_file():
                raise SettingsError(f"--resume: {path} not found: is {args.resume} a run folder?")
            settings = stored_settings(path)
            run_search(settings, resume=True)
        else:
            settings = settings_from_args(args)
            run_search(settings, resume=False, restart=args.restart)
    except SettingsError as err:
        parser.error(str(err))
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Interrupted)
        folder = args.resume or (settings.run_dir if settings else "RUN_DIR")
        print(f"{parser.prog}: interrupted ({err or 'Ctrl-C'}); the trainings in flight were "
              f"ended and recorded nowhere; continue with: python -m jaxloss.search --resume "
              f"{folder}", file=sys.stderr)
        return 143 if isinstance(err, Interrupted) else 130
    except InputError as err:  # a data set or file the run was given (e.g. an annotation file)
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a stage that cannot run here (e.g. detector stages missing)
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    return 0

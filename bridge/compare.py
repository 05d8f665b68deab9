"""``python -m bridge.compare``: train several losses × several seeds on one detector and one data
set, and tell whether their COCO mAPs differ beyond the seed noise.

::

    python -m bridge.compare --loss-cls FL FLI BCE --seeds 0 1 2
    python -m bridge.compare --loss-reg GIoU IoU --num-seeds 5 --out runs/compare-reg
    python -m bridge.compare --config faster-rcnn_r18-tiny --loss-cls CE CEI CSE-Autoloss-A_cls
    python -m bridge.compare --loss-cls FLI "mine=-w * y * log(sigmoid(x))" --iters 450

A loss is a library name (``FL``, ``CEI``, ...), formula text (paper or release notation), or
``NAME=FORMULA`` to give a formula a short name in the table. One comparison varies one loss of the
detector (``--loss-cls``: the classification loss, ``cls`` in RoI heads, ``cls_binary`` in
one-stage heads; ``--loss-reg``: the box loss); the other loss stays the config's, as in the
search's proxy task.

**Protocol.** By default every training is the search's proxy training
(:class:`bridge.search_stages.ProxyStage`): the same detector config as the search of that branch,
the same proxy split of the training set (``--data``, split with ``--data-seed`` as the search
splits with its ``--seed``), the same number of iterations (``proxy_epochs`` epochs, at least
``MIN_PROXY_ITERS``), COCO mAP (pycocotools) on the held-out split. Only the training seed varies,
one training per loss and seed; seed s is the search's proxy training of a search run with
``--seed s`` on the same split. ``--iters``, ``--proxy-epochs``, ``--proxy-val`` and ``--batch-size``
change the protocol.

**Output.** A table: per loss the mean ± sample std over seeds, the relative noise (std / mean), the
per-seed mAPs, and the difference to the first loss with a paired 95% interval over the seeds both
trained (Student's t with n - 1 degrees of freedom: the same seed shares the data split, and with
the same seed the same initialization and data order, so pairing removes their share of the
noise). ``--out DIR`` gets ``compare.json`` (the table's figures and the protocol),
``trainings.jsonl`` (every training's outcome) and ``trainings/<key>/`` (each training's folder and
log).

**Workers and resuming.** Every training runs in its own worker process with a time limit
(:mod:`bridge.executor`, ``--workers`` at once), as in the search. A training's outcome is appended
to ``DIR/trainings.jsonl`` as soon as it ends, keyed by a hash of everything that decides it (config,
branch, formula, data files, iterations, batch size, seed, task function), so a rerun with the same
``--out`` trains only what is missing. A loss that fails (NaN or inf, runs away, raises) is a final
result, shown in the table; a training the machine failed (``timeout``, ``crashed``, ``no_start``,
``out_of_memory``) is retried ``--retries`` times and is never kept as final: the next run trains
it again.

Exit status: 0 every training has a final outcome; 1 some trainings failed for machine reasons (rerun
to retry them); 2 bad arguments, loss, config or data (one line saying which).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from bridge.search_stages.cache import MACHINE_FAILURES
from bridge.search_stages.settings import DEFAULT_TASK
from jaxloss.errors import FormulaError, InputError
from jaxloss.search.stats import CONFIDENCE, paired_interval, t_quantile  # noqa: F401 - re-exported
from jaxloss.space.resolve import BRANCH_WORDS, as_loss

_NAME = re.compile(r"^[A-Za-z][\w.+-]*$")


class CompareError(InputError):
    """A bad loss, config, data set or flag of a comparison (printed as one line, exit 2)."""


# ----------------------------------------------------------------------------------------------
# the losses
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One loss of a comparison: its label in the table and its formula (parseable, canonical)."""

    name: str
    formula: str


def resolve_loss(text: str, branch: str, flag: str = "--loss") -> Candidate:
    """A library name, a formula, or ``NAME=FORMULA`` → :class:`Candidate` of ``branch``.

    Raises:
      CompareError: an unknown name, a formula that does not parse, or a loss of another branch;
        one line naming ``flag`` and the text.
    """
    from jaxloss.space.library import LIBRARY

    label, formula = None, text.strip()
    head, sep, tail = formula.partition("=")
    if sep and _NAME.match(head.strip()) and tail.strip():
        label, formula = head.strip(), tail.strip()
    if formula in LIBRARY and LIBRARY[formula].branch != branch:
        raise CompareError(f"{flag} {formula}: a {LIBRARY[formula].branch} loss, but this "
                           f"comparison trains {branch} losses ({BRANCH_WORDS[branch]})")
    try:
        loss = as_loss(formula, branch)  # any size: it is trained, not searched
    except FormulaError as err:
        if _NAME.match(formula) and not any(c in formula for c in "()*/"):
            close = difflib.get_close_matches(formula, list(LIBRARY), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise CompareError(f"{flag} {formula}: no library loss of that name{hint} and not a "
                               f"{branch} formula; library {branch} losses: "
                               f"{', '.join(n for n, l in LIBRARY.items() if l.branch == branch)}"
                               ) from None
        where = f" at position {err.position}" if err.position is not None else ""
        raise CompareError(f"{flag} {formula!r}: not a {branch} formula: {err.reason}{where}"
                           ) from None
    return Candidate(label or formula, str(loss))


# ----------------------------------------------------------------------------------------------
# the protocol
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """Everything that decides a training except the loss and the seed.

    ``training``: the keyword arguments of the task function that the search's proxy stage would
    give (``data``, ``images``, ``val``, ``iters``), ``--iters`` applied.
    """

    config: str
    branch: str
    training: dict
    batch_size: int | None
    explode_factor: float
    task: str
    timeout_s: float
    data_seed: int
    description: str
    data_digest: str = ""
    effective_batch: int | None = None  # batch_size, or the config's when that is None


    def describe(self) -> str:
        return (f"{self.config}, {self.branch} loss, {self.training['iters']} iterations "
                f"(batch {self.effective_batch}), {self.description}; proxy split "
                f"seed {self.data_seed}; task {self.task}")


def make_protocol(branch: str, out: "str | Path", *, config: str | None = None,
                  data: str | None = None, images: str | None = None,
                  data_seed: int | None = None, proxy_val: int | None = None,
                  proxy_epochs: int | None = None, iters: int | None = None,
                  batch_size: int | None = None, explode_factor: float | None = None,
                  timeout_s: float | None = None, task: str | None = None,
                  check_formula: str | None = None) -> Protocol:
    """The search's default proxy protocol for ``branch`` with the given changes; writes the proxy
    split to ``out/data``. Every argument left None takes the search's default
    (:class:`bridge.search_stages.settings.DetectorSettings`, the search's default seed).

    ``check_formula``: a loss put into the config's heads as the check, as a training will.

    Raises:
      CompareError: a config that does not exist, does not load, or has no head for ``branch``;
        a data set that cannot be read; a bad split size or iteration count.
    """
    from bridge.search_stages import (
        DetectorSetup,
        ProxyStage,
        check_detector_config,
        prepare_search_data,
    )
    from jaxloss.search.settings import SearchSettings, SettingsError

    given = dict(branch=branch, detector_config=config, data=data, images=images,
                 seed=SearchSettings().seed if data_seed is None else data_seed,
                 proxy_val=proxy_val, proxy_epochs=proxy_epochs, batch_size=batch_size,
                 explode_factor=explode_factor, train_timeout=timeout_s, detector_task=task,
                 initial=check_formula)
    d = DetectorSetup.from_search({k: v for k, v in given.items() if v is not None})
    if iters is not None and iters < 1:
        raise CompareError(f"--iters {iters}: a training needs at least 1 iteration")
    try:
        check_detector_config(d)
        search_data = prepare_search_data(d, Path(out))
    except SettingsError as err:  # worded for the search: its flag is --config here
        raise CompareError(str(err).replace("--detector-config", "--config")) from None
    stage = ProxyStage(d, search_data, Path(out), None, None, lambda *a, **k: None)
    training = dict(stage.training())
    if iters is not None:
        training["iters"] = int(iters)
    from bridge import config as configs

    batch = d.batch_size or configs.load(d.config).train_dataloader.get("batch_size")
    digest = hashlib.sha256()
    for path in (search_data.proxy_train, search_data.proxy_val):
        digest.update(Path(path).read_bytes())
    return Protocol(config=d.config, branch=branch, training=training, batch_size=d.batch_size,
                    explode_factor=d.explode_factor, task=d.task, timeout_s=d.timeout_s,
                    data_seed=d.seed, description=search_data.description,
                    data_digest=digest.hexdigest()[:24], effective_batch=batch)


def config_branch(config: str) -> str:
    """The classification branch of a config's heads (``cls`` for RoI heads, ``cls_binary`` for
    one-stage heads).

    Raises:
      CompareError: the config is missing, unreadable, or mixes both kinds of heads.
    """
    from bridge import config as configs

    try:
        cfg = configs.load(config)
        branches = {b for _, b in configs.detection_heads(cfg.model)}
    except FileNotFoundError as err:
        raise CompareError(f"--config: {err}") from None
    except ValueError as err:
        raise CompareError(f"--config {config}: {err}") from None
    except Exception as err:  # noqa: BLE001 - mmengine raises many kinds for a broken file
        raise CompareError(f"--config: {config} cannot be read as an MMDetection config "
                           f"({type(err).__name__}: {err})") from None
    if len(branches) != 1:
        raise CompareError(f"--config {config}: its heads take both kinds of classification loss")
    return branches.pop()


# ----------------------------------------------------------------------------------------------
# trainings and their cache
# ----------------------------------------------------------------------------------------------

def task_key(protocol: Protocol, formula: str, seed: int) -> str:
    """A hash of everything that decides one training (its outcome's key in the cache).

    The data enter by content (the proxy split's files), not by path; the time limit does not
    enter (it decides whether a training ends, not what it gives)."""
    from bridge import config as configs

    spec = dict(protocol.training, config=protocol.config,
                config_text=_config_digest(str(configs.find(protocol.config))),
                branch=protocol.branch, formula=formula, seed=int(seed),
                batch_size=protocol.batch_size, explode_factor=protocol.explode_factor,
                task=protocol.task, data_digest=protocol.data_digest)
    spec.pop("data", None), spec.pop("val", None)  # their paths: the content is in data_digest
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _config_digest(path: str) -> str:
    """The config file's text and its ``_base_`` files' (recursively), hashed."""
    digest = hashlib.sha256()
    todo, seen = [Path(path)], set()
    while todo:
        p = todo.pop()
        if p in seen or not p.is_file():
            continue
        seen.add(p)
        text = p.read_text()
        digest.update(text.encode())
        for base in re.findall(r"['\"](\.{1,2}/[^'\"]+\.py)['\"]", text):
            todo.append((p.parent / base).resolve())
    return digest.hexdigest()[:24]


class TrainingCache:
    """Outcomes of trainings by task key, appended to a JSON-lines file as each training ends.

    Lines whose ``reason`` is a machine failure (:data:`MACHINE_FAILURES`) are the record of what
    happened, never a result: they are skipped when the file is read, so that training runs again.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that training runs again
                if entry.get("reason") not in MACHINE_FAILURES:
                    self.entries[entry["task"]] = entry

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, entry: dict) -> None:
        if entry.get("reason") not in MACHINE_FAILURES:
            self.entries[entry["task"]] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def run_trainings(protocol: Protocol, candidates: Sequence[Candidate], seeds: Sequence[int],
                  out: "str | Path", *, workers: int | None = None, executor: str = "local",
                  retries: int = 1, log: Callable[[str], None] = print) -> dict:
    """Train every (candidate, seed) not in ``out/trainings.jsonl``; returns
    ``{(name, seed): entry}`` for every pair (None for a pair the machine failed every try).

    An entry has ``reason`` (None, or a loss failure: ``nonfinite``, ``exploded``, ``error``),
    ``result`` (the task's return value: ``mAP``, ``mAP_50``, ... when it succeeded), ``seconds``
    (the training's wall time), ``formula``, ``seed`` and ``task`` (its key).
    """
    from bridge.executor import Task
    from bridge.search_stages import DetectorSetup, make_executor

    out = Path(out)
    cache = TrainingCache(out / "trainings.jsonl")
    keys = {(c.name, s): task_key(protocol, c.formula, s) for c in candidates for s in seeds}
    formulas = {c.name: c.formula for c in candidates}
    entries = {pair: cache.get(key) for pair, key in keys.items()}
    todo = [pair for pair, entry in entries.items() if entry is None]
    distinct = {keys[p]: p for p in todo}  # one training per key (a loss named twice trains once)
    total, cached = len(distinct), len(set(keys.values())) - len(distinct)
    log(f"{total} training(s) to run, {cached} from {cache.path}" if cached else
        f"{total} training(s) to run")
    if not distinct:
        return entries
    if workers is None:  # as the search: one per GPU, else one 1-thread training per core (<= 4)
        from bridge.executor import default_workers, visible_gpus

        workers = default_workers(None, visible_gpus())
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    tasks = {}
    for key, (name, seed) in distinct.items():
        folder = out / "trainings" / key
        kwargs = dict(protocol.training, config=protocol.config, branch=protocol.branch,
                      formula=formulas[name], work_dir=str(folder), seed=int(seed),
                      batch_size=protocol.batch_size, explode_factor=protocol.explode_factor,
                      threads=threads)
        tasks[key] = Task(key, protocol.task, kwargs, timeout_s=protocol.timeout_s,
                          log_path=str(folder / "train.log"))
    d = DetectorSetup.from_search(dict(branch=protocol.branch, seed=protocol.data_seed,
                                       workers=workers, executor=executor,
                                       initial=formulas[candidates[0].name]))
    start = time.monotonic()
    finished = [0]
    train_seconds: list[float] = []

    def record(outcome) -> None:
        name, seed = distinct[outcome.key]
        entry = {"task": outcome.key, "loss": name, "formula": formulas[name], "seed": int(seed),
                 "result": outcome.result, "reason": outcome.reason,
                 "message": outcome.message.splitlines()[0] if outcome.message else "",
                 "seconds": outcome.seconds, "iters": protocol.training["iters"],
                 "config": protocol.config, "branch": protocol.branch}
        cache.put(entry)
        final = outcome.reason not in MACHINE_FAILURES
        if final:
            finished[0] += 1
            train_seconds.append(outcome.seconds)
            for pair, key in keys.items():
                if key == outcome.key:
                    entries[pair] = entry
        status = (f"mAP {outcome.result['mAP']:.4f}" if outcome.ok else
                  f"failed: {outcome.reason}" + ("" if final else " (retried / rerun)"))
        left = total - finished[0]
        eta = ""
        if left and train_seconds:
            eta = f", about {_duration(statistics.fmean(train_seconds) * left / workers)} left"
        log(f"[{finished[0]}/{total}] {name} seed {seed}: {status} ({outcome.seconds:.0f} s); "
            f"elapsed {_duration(time.monotonic() - start)}, {left} to go{eta}")

    pending = list(tasks.values())
    with make_executor(d) as pool:
        for attempt in range(retries + 1):
            pool.map(pending, on_done=record)
            pending = [tasks[k] for k, p in distinct.items() if entries[p] is None]
            if not pending:
                break
            if attempt < retries:
                log(f"retrying {len(pending)} training(s) the machine failed")
    return entries


# ----------------------------------------------------------------------------------------------
# statistics and the table
# ----------------------------------------------------------------------------------------------

def summarize(candidates: Sequence[Candidate], seeds: Sequence[int], entries: dict) -> dict:
    """Per loss: per-seed mAPs (None where a training failed or is missing, with its reason), n,
    mean, sample std, relative noise (std / mean) and the paired difference to the first loss.

    Returns:
      ``{name: {...}}`` in the order of ``candidates`` (mAP in COCO's 0..1 units).
    """
    table = {}
    first = candidates[0].name
    for c in candidates:
        per_seed, failed = {}, {}
        for s in seeds:
            entry = entries.get((c.name, s))
            if entry is None:
                per_seed[s], failed[s] = None, "not trained"
            elif entry["reason"] is not None:
                per_seed[s], failed[s] = None, entry["reason"]
            else:
                per_seed[s] = float(entry["result"]["mAP"])
        values = [v for v in per_seed.values() if v is not None]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) >= 2 else None
        row = {"formula": c.formula, "per_seed": per_seed, "failed": failed, "n": len(values),
               "mean": mean, "std": std,
               "relative_noise": std / mean if std is not None and mean else None}
        if c.name != first:
            ref = table[first]["per_seed"]
            both = [s for s in seeds if per_seed[s] is not None and ref[s] is not None]
            row["diff"] = dict(paired_interval([per_seed[s] for s in both],
                                               [ref[s] for s in both]), reference=first)
        table[c.name] = row
    return table


def _f(value, digits: int = 4, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_table(table: dict, seeds: Sequence[int]) -> str:
    """The comparison as fixed-width text (one row per loss)."""
    names = list(table)
    width = max(12, *(len(n) for n in names))
    seed_cols = [f"s{s}" for s in seeds]
    ref = names[0]
    head = (f"{'loss':<{width}}  {'mAP mean ± std':>17}  {'std/mean':>8}  "
            + "  ".join(f"{c:>7}" for c in seed_cols)
            + f"  {'Δ vs ' + ref + ' [paired 95% CI]':>30}")
    lines = [head, "-" * len(head)]
    for name, row in table.items():
        mean_std = f"{_f(row['mean'])} ± {_f(row['std'])}" if row["mean"] is not None else "-"
        noise = f"{100 * row['relative_noise']:.1f}%" if row["relative_noise"] is not None else "-"
        cells = []
        for s in seeds:
            v = row["per_seed"][s]
            cells.append(f"{v:7.4f}" if v is not None else f"{row['failed'][s][:7]:>7}")
        diff = ""
        if "diff" in row:
            dd = row["diff"]
            ci = dd["ci"]
            diff = (f"{_f(dd['mean'], sign=True)} [{_f(ci[0], sign=True)}, {_f(ci[1], sign=True)}]"
                    if ci else f"{_f(dd['mean'], sign=True)} (n={dd['n']})")
        lines.append(f"{name:<{width}}  {mean_std:>17}  {noise:>8}  " + "  ".join(cells)
                     + f"  {diff:>30}")
    legend = [f"  {name} = {row['formula']}" for name, row in table.items()
              if name != row["formula"]]
    if legend:
        lines += ["", "losses:"] + legend
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the whole comparison
# ----------------------------------------------------------------------------------------------

def compare(protocol: Protocol, candidates: Sequence[Candidate], seeds: Sequence[int],
            out: "str | Path", *, workers: int | None = None, executor: str = "local", retries: int = 1,
            log: Callable[[str], None] = print) -> dict:
    """Train every loss × seed (what ``out`` does not hold yet), write ``out/compare.json`` and
    return its content: ``protocol``, ``seeds``, ``losses`` (:func:`summarize`, per-seed keys as
    strings), ``complete`` (every training has a final outcome) and ``seconds`` (this call's wall
    time)."""
    start = time.monotonic()
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise CompareError(f"a loss is named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if not seeds:
        raise CompareError("no seeds: give --seeds S [S ...] or --num-seeds N")
    if len(set(seeds)) != len(seeds):
        raise CompareError(f"--seeds: a seed is given twice ({' '.join(map(str, seeds))})")
    entries = run_trainings(protocol, candidates, seeds, out, workers=workers,
                            executor=executor, retries=retries, log=log)
    table = summarize(candidates, seeds, entries)
    complete = all(e is not None for e in entries.values())
    report = {
        "protocol": dict(asdict(protocol), text=protocol.describe()),
        "seeds": list(seeds),
        "reference": names[0],
        "losses": {n: dict(row, per_seed={str(s): v for s, v in row["per_seed"].items()},
                           failed={str(s): r for s, r in row["failed"].items()})
                   for n, row in table.items()},
        "complete": complete,
        "trainings": str(Path(out) / "trainings.jsonl"),
        "seconds": time.monotonic() - start,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "compare.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------

EPILOG = """\
examples:
  python -m bridge.compare --loss-cls FL FLI BCE                  (FCOS R18-tiny, seeds 0 1 2)
  python -m bridge.compare --loss-reg GIoU IoU --num-seeds 5
  python -m bridge.compare --config faster-rcnn_r18-tiny --loss-cls CE CEI --out runs/two-stage
  python -m bridge.compare --loss-cls FLI "mine=-w*y*log(sigmoid(x))" --iters 450

Every word after --loss-cls / --loss-reg up to the next flag is a loss (a formula may begin with
'-'). Rerun with the same --out to train only what is missing.
"""


def build_parser() -> argparse.ArgumentParser:
    from bridge.search_stages.settings import DetectorSettings, default_configs
    from jaxloss.search.settings import SearchSettings

    d, seed = DetectorSettings(), SearchSettings().seed
    p = argparse.ArgumentParser(
        prog="python -m bridge.compare",
        description="Train losses × seeds on one detector (by default the search's proxy "
                    "protocol), evaluate COCO mAP and print mean ± std per loss with the paired "
                    "difference to the first loss.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("losses (one branch per comparison; the first loss is the reference)")
    g.add_argument("--loss-cls", action="extend", nargs="+", default=None, metavar="LOSS",
                   help="classification losses: library name, formula, or NAME=FORMULA (cls for "
                        "RoI heads, cls_binary for one-stage heads; the box loss stays the "
                        "config's)")
    g.add_argument("--loss-reg", action="extend", nargs="+", default=None, metavar="LOSS",
                   help="box regression losses (the classification loss stays the config's)")
    g.add_argument("--branch", choices=["cls", "cls_binary", "reg"],
                   help="the losses' branch (default: reg for --loss-reg; for --loss-cls the "
                        "branch of --config's heads, else of the library names given, else "
                        "cls_binary)")
    s = p.add_argument_group("seeds")
    seeds = s.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, nargs="+", metavar="S",
                       help="training seeds (default 0 1 2)")
    seeds.add_argument("--num-seeds", type=int, metavar="N", help="seeds 0 .. N-1")
    t = p.add_argument_group("protocol (default: the search's proxy task)")
    t.add_argument("--config", help="detector config (default: the search's for the branch: "
                                    f"{default_configs()})")
    t.add_argument("--data", default=d.data,
                   help=f"training set: {d.data} (default; embedded:SIZE for SIZE px images), "
                        "coco:FILE.json, voc:ROOT, bdd:FILE.json")
    t.add_argument("--images", help="image folder of --data (coco, bdd)")
    t.add_argument("--data-seed", type=int, default=seed,
                   help=f"seed of the proxy split (default {seed}, the search's default seed)")
    t.add_argument("--proxy-val", type=int, metavar="N",
                   help="training images held out to evaluate on (default: the search's)")
    t.add_argument("--proxy-epochs", type=int, metavar="N",
                   help=f"epochs per training (default {d.proxy_epochs}; at least the search's "
                        "minimum of iterations)")
    t.add_argument("--iters", type=int, metavar="N",
                   help="training iterations, instead of the proxy task's")
    t.add_argument("--batch-size", type=int, metavar="B", help="default: the config's")
    t.add_argument("--explode-factor", type=float, metavar="F",
                   help=f"a loss above F times its first value fails (default {d.explode_factor:g})")
    r = p.add_argument_group("running")
    r.add_argument("--out", metavar="DIR",
                   help="results folder, reused by a rerun (default runs/compare-<config>-<branch>)")
    r.add_argument("--workers", type=int, metavar="W",
                   help="trainings at once (default: one per GPU; on a CPU machine one "
                        "single-threaded training per core, at most 4)")
    r.add_argument("--executor", choices=["local", "ray"], default=d.executor)
    r.add_argument("--timeout", type=float, metavar="S",
                   help=f"seconds before a training is killed (default {d.train_timeout:g})")
    r.add_argument("--retries", type=int, default=1, metavar="R",
                   help="times a training the machine failed is tried again (default 1)")
    r.add_argument("--task", metavar="MODULE:FUNCTION",
                   help=f"training function with train_candidate's arguments (default {DEFAULT_TASK})")
    return p


def _choose_branch(args) -> tuple[str, list[str], str]:
    """(branch, loss texts, flag) from the flags; raises CompareError."""
    from jaxloss.space.library import LIBRARY

    if args.loss_cls and args.loss_reg:
        raise CompareError("give --loss-cls or --loss-reg, not both: a comparison varies one loss "
                           "(the other stays the config's)")
    if not (args.loss_cls or args.loss_reg):
        raise CompareError("no losses: give --loss-cls LOSS [LOSS ...] or --loss-reg LOSS [LOSS ...]")
    if args.loss_reg:
        if args.branch not in (None, "reg"):
            raise CompareError(f"--branch {args.branch} with --loss-reg: box losses are reg")
        return "reg", args.loss_reg, "--loss-reg"
    if args.branch == "reg":
        raise CompareError("--branch reg with --loss-cls: give box losses with --loss-reg")
    if args.config is not None:
        heads = config_branch(args.config)
        if args.branch not in (None, heads):
            raise CompareError(f"--branch {args.branch}: --config {args.config} has "
                               f"{BRANCH_WORDS[heads]} ({heads})")
        return heads, args.loss_cls, "--loss-cls"
    if args.branch:
        return args.branch, args.loss_cls, "--loss-cls"
    named = [LIBRARY[t.partition("=")[2].strip() if "=" in t else t.strip()].branch
             for t in args.loss_cls
             if (t.partition("=")[2].strip() if "=" in t else t.strip()) in LIBRARY]
    return (named[0] if named else "cls_binary"), args.loss_cls, "--loss-cls"


def _formulas_as_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--loss-cls A -y*log(sigmoid(x))`` → ``--loss-cls=A --loss-cls=-y*log(sigmoid(x))``: a
    formula that begins with '-' is a value of the loss flag before it, not an unknown flag."""
    flags = set(parser._option_string_actions)
    out, loss_flag = [], None
    for token in argv:
        if token in ("--loss-cls", "--loss-reg"):
            loss_flag = token
            continue
        if token in flags or token.split("=", 1)[0] in flags:
            loss_flag = None
            out.append(token)
        elif loss_flag is not None:
            out.append(f"{loss_flag}={token}")
        else:
            out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_formulas_as_values(argv, parser))
    log = lambda message: print(message, flush=True)  # noqa: E731
    try:
        if args.workers is not None and args.workers < 1:
            raise CompareError(f"--workers {args.workers}: at least 1")
        if args.retries < 0:
            raise CompareError(f"--retries {args.retries}: 0 or more")
        if args.timeout is not None and args.timeout <= 0:
            raise CompareError(f"--timeout {args.timeout:g}: seconds, more than 0")
        if args.num_seeds is not None and args.num_seeds < 1:
            raise CompareError(f"--num-seeds {args.num_seeds}: at least 1")
        seeds = args.seeds if args.seeds else list(range(args.num_seeds or 3))
        task = args.task or DEFAULT_TASK
        try:
            from bridge.executor import resolve

            resolve(task)
        except (ImportError, AttributeError, ValueError) as err:
            raise CompareError(f"--task {task}: cannot be imported ({type(err).__name__}: "
                               f"{err})") from None
        branch, texts, flag = _choose_branch(args)
        candidates = [resolve_loss(text, branch, flag) for text in texts]
        from bridge.search_stages import DEFAULT_CONFIG

        config = args.config or DEFAULT_CONFIG[branch]
        out = Path(args.out or f"runs/compare-{Path(config).stem}-{branch}")
        protocol = make_protocol(branch, out, config=config, data=args.data, images=args.images,
                                 data_seed=args.data_seed, proxy_val=args.proxy_val,
                                 proxy_epochs=args.proxy_epochs, iters=args.iters,
                                 batch_size=args.batch_size, explode_factor=args.explode_factor,
                                 timeout_s=args.timeout, task=task,
                                 check_formula=candidates[0].formula)
        log(f"protocol: {protocol.describe()}")
        log(f"losses: {', '.join(c.name for c in candidates)}; seeds {' '.join(map(str, seeds))}; "
            f"results in {out}")
        report = compare(protocol, candidates, seeds, out, workers=args.workers,
                         executor=args.executor, retries=args.retries, log=log)
    except InputError as err:  # CompareError, and the data's DataError
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    table = {name: dict(row, per_seed={int(s): v for s, v in row["per_seed"].items()},
                        failed={int(s): r for s, r in row["failed"].items()})
             for name, row in report["losses"].items()}
    print()
    print(format_table(table, seeds))
    print(f"\nmAP: COCO bbox mAP (pycocotools) on the held-out split; std: sample std over seeds; "
          f"Δ: paired over the seeds both trained, 95% interval with Student's t.\n"
          f"written: {out / 'compare.json'}, {out / 'trainings.jsonl'}")
    if not report["complete"]:
        missing = sum(len([r for r in row["failed"].values() if r == "not trained"])
                      for row in report["losses"].values())
        print(f"{parser.prog}: {missing} training(s) failed for machine reasons "
              f"({'/'.join(sorted(MACHINE_FAILURES))}); rerun the same command to train them again",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The search: the evosax strategy, the CLI, and kill-and-resume (the variation operators are
tested in test_strategy.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import jaxloss
from jaxloss.filters import equivalence
from jaxloss.search import Settings, SettingsError, run_search
from jaxloss.search.cli import main as cli_main
from jaxloss.search.settings import validate
from tests.processes import python_env

ROOT = Path(__file__).resolve().parents[2]


def test_settings_are_validated_with_clear_messages():
    with pytest.raises(SettingsError, match="--population: a whole number >= 2"):
        validate(Settings(population=1))
    with pytest.raises(SettingsError, match="--p-mutation: a probability"):
        validate(Settings(p_mutation=1.5))
    with pytest.raises(SettingsError, match="--initial: unknown name 'foo'"):
        validate(Settings(initial="foo(x)"))
    with pytest.raises(SettingsError, match="nothing ranks the candidates"):
        validate(Settings(simulation=False, detector=False))
    with pytest.raises(SettingsError, match="--parents"):
        validate(Settings(population=10, parents=20))


def test_cli_rejects_bad_values_without_a_traceback(capsys, tmp_path):
    for argv, words in [(["--population", "0"], "--population"),
                        (["--branch", "seg"], "invalid choice"),
                        (["--p-crossover", "x"], "invalid float value"),
                        (["--config", str(tmp_path / "missing.toml")], "no such file"),
                        (["--resume", str(tmp_path)], "settings.json not found"),
                        # flags that only change how fast it runs may go with --resume
                        (["--resume", str(tmp_path), "--no-compile-cache"],
                         "settings.json not found"),
                        (["--resume", str(tmp_path), "--seed", "3"], "do not combine it with --seed"),
                        (["--compile-cache", "a", "--no-compile-cache"], "not allowed with")]:
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    run = tmp_path / "run"
    run.mkdir()
    for stored, words in [("{populaton: 3", "settings.json cannot be read"),
                          ('["cls"]', "holds a list, not the run's settings"),
                          ('{"populaton": 3}', "not settings: populaton"),
                          ('{"population": 1}', "--population: a whole number >= 2")]:
        (run / "settings.json").write_text(stored)
        with pytest.raises(SystemExit) as info:
            cli_main(["--resume", str(run)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and words in err and "Traceback" not in err, err
    bad = tmp_path / "bad.toml"
    bad.write_text("populaton = 3\n")
    with pytest.raises(SystemExit):
        cli_main(["--config", str(bad)])
    assert "unknown settings populaton" in capsys.readouterr().err


def test_cli_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--branch", "--population", "--generations", "--parents", "--top-k",
                 "--p-crossover", "--p-mutation", "--seed", "--out", "--resume", "--initial",
                 "--no-detector", "--config"):
        assert flag in out


SMALL = dict(branch="reg", population=120, generations=3, parents=16, capacity=16, seed=7,
             detector=False)


def _search_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "jaxloss.search", "--branch", "reg", "--population", "120",
            "--generations", "3", "--parents", "16", "--capacity", "16", "--seed", "7",
            "--no-detector", "--out", str(out)]


def test_sigkill_mid_generation_then_resume_gives_the_uninterrupted_result(tmp_path):
    reference = run_search(validate(Settings(out=str(tmp_path / "ref"), **SMALL)),
                           log=lambda *a, **k: None)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_search_command(killed), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=python_env(), cwd=ROOT)
    seen = []
    deadline = time.time() + 600
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("generation 2/3"):
            time.sleep(0.3)  # inside generation 2: its checks or simulation are running
            proc.send_signal(signal.SIGKILL)
            break
        assert time.time() < deadline, "".join(seen)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (killed / "report.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "jaxloss.search", "--resume", str(killed)],
                             capture_output=True, text=True, env=python_env(), cwd=ROOT,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout and "after generation 1" in resumed.stdout
    result = json.loads((killed / "report.json").read_text())
    assert result["best"] == reference["best"]
    assert result["fitness"] == reference["fitness"]
    assert result["archive"] == reference["archive"]
    assert result["funnel"] == reference["funnel"]
    assert result["initial"] == reference["initial"]
    lines = (killed / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3 * 120  # L_I, then 3 generations: the killed one's partial log went


def test_a_corrupt_checkpoint_is_skipped_with_a_message(tmp_path):
    out = tmp_path / "run"
    settings = validate(Settings(out=str(out), **dict(SMALL, generations=2)))
    run_search(settings, log=lambda *a, **k: None)
    latest = out / "checkpoints" / "2"
    for f in latest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)
    messages = []
    run_search(settings, resume=True, log=lambda *a, **k: messages.append(" ".join(map(str, a))))
    text = "\n".join(messages)
    assert "checkpoint 2" in text and "unusable" in text
    assert "after generation 1" in text
    assert json.loads((out / "report.json").read_text())["best"]


def test_the_paper_scale_search_configs_are_valid():
    from jaxloss.search.settings import load_config

    for path in sorted((ROOT / "configs" / "search").glob("*.toml")):
        settings = validate(Settings(**load_config(path)))
        assert settings.population >= 1000 and settings.detector


def test_the_initial_loss_is_measured_first_and_is_the_first_parent(tmp_path):
    out = tmp_path / "run"
    messages = []
    report = run_search(validate(Settings(out=str(out), **dict(SMALL, generations=2))),
                        log=lambda *a, **k: messages.append(" ".join(map(str, a))))
    initial = report["initial"]
    assert initial["formula"] == str(jaxloss.LIBRARY["GIoU"])
    assert initial["unit"] == "simulation score" and 0 < initial["fitness"] <= 1
    assert initial["simulation"] == initial["fitness"]
    records = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert records[0]["generation"] == 0 and records[0]["initial"]
    assert records[0]["fitness"] == initial["fitness"]
    # the archive holds what the search found, and the report says how it compares with L_I
    assert all(e["key"] != initial["key"] for e in report["archive"])
    assert report["best_vs_initial"] == pytest.approx(report["fitness"] - initial["fitness"])
    text = "\n".join(messages)
    assert "generation 0: the initial loss L_I" in text and "vs initial:" in text
    # the log line of a generation names the parents' count and their fitness range
    assert "parents: 16 of 16 slots, simulation score" in text
    low, high = report["parents_by_generation"][-1][2:]
    assert low <= high and high >= initial["fitness"]  # (mu + lambda): L_I is never lost
    md = (out / "report.md").read_text()
    assert "## Initial loss L_I (generation 0)" in md and "Best vs initial" in md
    # the result: L_I and the best losses measured again on task draws the search never used
    final = report["final"]
    assert final["stage"] == "simulation" and final["seeds"] == [8, 9, 10]  # search: draw 0
    rows = final["losses"]
    assert rows[0]["initial"] and rows[0]["formula"] == initial["formula"]
    # the best three archive entries that train distinctly (not like L_I either): the archive
    # keeps spellings of one function apart, and losses that differ by a constant (this run's
    # archive has `1 - i/e + (e - e)/e` and `1 - i/e + e/e`); the final measurement repeats none
    archive = [e["formula"] for e in report["archive"]]
    trains = equivalence.TrainingClasses(report["settings"]["branch"]).assign(
        [initial["formula"]] + archive)
    expected, seen = [], {trains[0]}
    for formula, c in zip(archive, trains[1:]):
        if c not in seen and len(expected) < 3:
            expected.append(formula)
            seen.add(c)
    assert len(expected) == 3 and [r["formula"] for r in rows[1:]] == expected
    for row in rows:
        assert row["n"] == 3 and row["std"] > 0 and row["values"] != [row["in_search"]] * 3
        np.testing.assert_allclose(row["mean"], np.mean(row["values"]), rtol=1e-9)
    diff = rows[1]["vs_initial"]
    paired = np.subtract(rows[1]["values"], rows[0]["values"])
    half = 4.302653 * np.std(paired, ddof=1) / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    np.testing.assert_allclose(diff["ci"], [paired.mean() - half, paired.mean() + half],
                               rtol=1e-5)
    assert "## Result: re-measured on fresh seeds" in md and "not the in-search maximum" in md


def test_a_run_folder_is_never_overwritten_and_restart_keeps_the_old_run(tmp_path, capsys):
    out = tmp_path / "run"
    settings = validate(Settings(out=str(out), **dict(SMALL, generations=1)))
    run_search(settings, log=lambda *a, **k: None)
    before = (out / "candidates.jsonl").read_text()
    from jaxloss.search.run import RunFolderError

    with pytest.raises(RunFolderError, match="holds a search already.*--resume.*--restart"):
        run_search(settings, log=lambda *a, **k: None)
    assert (out / "candidates.jsonl").read_text() == before
    code = cli_main(["--branch", "reg", "--population", "120", "--generations", "1",
                     "--parents", "16", "--capacity", "16", "--seed", "7", "--no-detector",
                     "--out", str(out)])
    assert code == 2 and "holds a search already" in capsys.readouterr().err
    # start over as a user does, in a process of its own (orbax's and tensorstore's state of
    # the first run's checkpoint folder stays in this one)
    restarted = subprocess.run(_search_command(out)[:-2] + ["--generations", "1", "--out",
                                                            str(out), "--restart"],
                               capture_output=True, text=True, env=python_env(), cwd=ROOT,
                               timeout=600)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "--restart: the previous run's files are in" in restarted.stdout
    previous = list(out.glob("previous-*"))
    assert len(previous) == 1 and (previous[0] / "candidates.jsonl").read_text() == before
    assert (out / "candidates.jsonl").read_text() == before  # same seed, same run
    with pytest.raises(SystemExit):
        cli_main(["--resume", str(out), "--restart"])
    assert "does not go with --resume" in capsys.readouterr().err


def test_a_resume_with_no_usable_checkpoint_stops_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    settings = validate(Settings(out=str(out), **dict(SMALL, generations=2)))
    run_search(settings, log=lambda *a, **k: None)
    log_before = (out / "candidates.jsonl").read_text()
    for f in (out / "checkpoints").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)

    def resume():  # in a process of its own, as a user's (tensorstore keeps state per folder)
        return subprocess.run([sys.executable, "-m", "jaxloss.search", "--resume", str(out)],
                              capture_output=True, text=True, env=python_env(), cwd=ROOT,
                              timeout=600)

    first = resume()
    err = first.stderr
    assert first.returncode == 2 and "no checkpoint in" in err and "restores" in err, err
    assert "Nothing was changed" in err and "Traceback" not in err
    assert (out / "candidates.jsonl").read_text() == log_before
    assert len(list((out / "checkpoints-unusable").iterdir())) == 3  # kept, not deleted
    # a second try finds no checkpoint but a log: still an error, still nothing changed
    second = resume()
    assert second.returncode == 2, second.stdout + second.stderr
    assert "holds results but there is no checkpoint" in second.stderr
    assert (out / "candidates.jsonl").read_text() == log_before


def test_the_report_does_not_wait_for_sympy_on_a_hard_formula():
    from jaxloss.search import report

    # sympy.simplify runs for minutes on this constant subtree of S-curves and logarithms
    hard = ("sqrt(softplus(cos(gd(alf(tanh(log(softplus(cos(-3))))))))) "
            "+ relu(tanh(log(softplus(cos(-3)))))")
    start = time.perf_counter()
    d = report.describe(hard, "cls_binary")
    assert time.perf_counter() - start < report.SIMPLIFY_SECONDS + 10
    assert "did not simplify it within" in d["sympy"] and d["latex"]
    assert report.describe("x * 1 + (y - y)", "cls_binary")["sympy"] == "x"


def test_the_final_measurement_takes_distinct_trainings(tmp_path):
    """Spellings of one function (``i/u`` and ``u*i/(u*u)``; a spelling of L_I's function), and
    losses that differ by a constant (the same gradient, so the same training) are measured once:
    final_k counts trainings, in archive order."""
    from jaxloss.search import archive as archives
    from jaxloss.search.record import RunRecord
    from jaxloss.search.run import Search

    settings = validate(Settings(out=str(tmp_path / "run"),
                                 **dict(SMALL, generations=1, final_k=2, final_seeds=2)))
    search = Search(settings, log=lambda *a, **k: None)
    initial = str(jaxloss.parse("1 - i/u", "reg"))
    ranked = ["1 - u*i/(u*u)",       # L_I's function, spelled otherwise: skipped
              "1 - i/u + (e - u)/e",  # kept
              "(e - u)/e + 1 - i/u",  # the kept one again: skipped
              "(u - i)/u",            # L_I's function again: skipped
              "2 - i/u",              # L_I plus 1: the same gradient, skipped
              "1 - i*i/(u*u)"]        # kept: the second distinct function
    entries = [archives.Entry(str(jaxloss.parse(f, "reg")), jaxloss.parse(f, "reg").key,
                              0.9 - 0.1 * k, 1) for k, f in enumerate(ranked)]
    record = RunRecord(settings=settings.to_json(), archive=archives.to_json(entries),
                       initial={"formula": initial, "fitness": 0.5})
    final = search.measure_final(record)
    formulas = [row["formula"] for row in final["losses"]]
    assert formulas == [initial, entries[1].formula, entries[5].formula]
    assert all(row["n"] == 2 for row in final["losses"])


def test_the_verdict_says_how_sure_it_is_and_how_to_check_with_more_seeds():
    """The report's verdict on the fresh-seed table: which losses beat L_I, that the intervals
    are uncorrected and few-seeded, and the exact command that re-measures with more seeds."""
    from jaxloss.search import report

    def row(formula, lo, initial=False):
        r = {"formula": formula, "initial": initial}
        return r if initial else dict(r, vs_initial={"mean": lo + 0.01, "ci": [lo, lo + 0.02]})

    final = {"stage": "proxy", "seeds": [1, 2, 3],
             "losses": [row("FLI-text", 0, True), row("A", 0.01), row("B", -0.01)]}
    text = report._verdict(final, "cls_binary")
    assert text.startswith("1 of 2 re-measured losses beat L_I beyond the noise")
    assert "over 3 seeds, with no correction for testing 2 losses" in text
    assert ("`python -m bridge.compare --loss-cls 'FLI-text' 'A' --seeds 4 5 6 7 8 9 10 11`"
            in text)
    final["losses"] = [row("1 - i/u", 0, True), row("C", -0.02)]
    text = report._verdict(final, "reg")
    assert text.startswith("No re-measured loss beat L_I") and "--loss-reg '1 - i/u' 'C'" in text
    assert "bridge.compare" not in report._verdict(dict(final, stage="simulation"), "reg")

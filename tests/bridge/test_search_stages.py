"""The search with detector stages: failures isolated, results cached, Ray as good as local.

Trainings are replaced by ``tests.faults.fake_training`` (instant, deterministic, faulty for some
formulas) so that these tests exercise the stages, the executors and the bookkeeping in seconds;
``tests/test_bridge_train.py`` trains real detectors.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxloss.search import Settings, run_search
from jaxloss.search.settings import validate
from tests.processes import python_env

FAKE = dict(branch="cls_binary", population=150, generations=3, top_k=4, verify_k=8, capacity=24,
            seed=3, verify_iters=5, train_timeout=4.0, workers=2,
            detector_task="tests.faults:fake_training")


ROOT = Path(__file__).resolve().parents[2]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("detector") / "run"
    settings = validate(Settings(out=str(out), **FAKE))
    return settings, out, run_search(settings, log=lambda *a, **k: None)


def test_faulty_trainings_are_marked_failed_and_the_search_goes_on(faulty_run):
    _, out, report = faulty_run
    results = [json.loads(l) for l in (out / "detector_results.jsonl").read_text().splitlines()]
    reasons = {r["reason"] for r in results}
    assert {"nonfinite", "timeout", "crashed"} <= reasons, reasons
    assert any(r["reason"] is None for r in results)
    # every failed training shows up as a rejected candidate, and the search still found a best
    failed = {r["formula"] for r in results if r["reason"]}
    records = _records(out)
    assert {rec.get("reason") for rec in records if rec.get("formula") in failed} - {None}
    assert report["best"] and report["fitness"] is not None
    assert "proxy" in report["totals"] and "d_verify" in report["totals"]
    # nothing is trained twice: one cache entry per (stage, distinct loss)
    keys = [r["task"] for r in results]
    assert len(keys) == len(set(keys))
    # a machine failure (the fake hangs or kills its worker every time) is tried twice, a failure
    # of the loss (NaN) once; the candidate's log record names both attempts
    for r in results:
        if r["reason"] in ("timeout", "crashed"):
            assert r["attempts"] == [r["reason"]] * 2, r
        else:
            assert "attempts" not in r, r
    retried = [rec for rec in records
               if any("attempts" in d for d in rec.get("details", {}).values())]
    assert retried and all(rec["reason"] in ("timeout", "crashed") for rec in retried)


def test_the_initial_loss_is_measured_as_a_candidate_and_parents_are_measured(faulty_run):
    settings, out, report = faulty_run
    from tests.faults import fake_training

    initial = report["initial"]
    expected = fake_training(formula=initial["formula"], work_dir="")["mAP"]
    assert initial["proxy"] == initial["fitness"] == pytest.approx(expected, rel=1e-6)
    assert initial["d_verify"] == pytest.approx(expected, rel=1e-6)  # float32 scores
    assert initial["unit"] == "mAP" and "simulation" in initial
    assert settings.parents == settings.top_k == 4 and settings.verify_k == 8
    # every parent has a measured proxy fitness: at most L_I + K new ones after generation 1
    for generation, count, low, high in report["parents_by_generation"]:
        assert 1 <= count <= settings.parents and low <= high
    records = _records(out)
    by_gen = {}
    for rec in records:
        by_gen.setdefault(rec["generation"], []).append(rec)
    assert len(by_gen[0]) == 1 and by_gen[0][0]["fitness"] == initial["fitness"]
    # no later generation is mostly copies of L_I
    for generation in (2, 3):
        copies = sum(rec["key"] == initial["key"] for rec in by_gen[generation])
        assert copies <= 0.1 * len(by_gen[generation]), (generation, copies)


def test_the_result_is_the_best_losses_and_l_i_retrained_with_fresh_seeds(faulty_run):
    settings, out, report = faulty_run
    final = report["final"]
    assert final["stage"] == "proxy" and final["unit"] == "mAP"
    assert final["seeds"] == [4, 5, 6] and settings.seed not in final["seeds"]
    rows = final["losses"]
    assert rows[0]["initial"] and len(rows) == 1 + 3
    results = [json.loads(l) for l in (out / "detector_results.jsonl").read_text().splitlines()]
    for row in rows:
        trained = sorted(r["seed"] for r in results
                         if r["stage"] == "proxy" and r["formula"] == row["formula"])
        assert trained == sorted([settings.seed] + final["seeds"]), row["formula"]
        assert row["n"] == 3 and row["values"] == [pytest.approx(row["in_search"], rel=1e-6)] * 3
    md = (out / "report.md").read_text()
    assert "## Result: re-measured on fresh seeds" in md


def test_algorithm_1_order_two_cuts_before_the_detector_stages(faulty_run):
    settings, out, report = faulty_run
    for generation in report["funnel"]:
        rows = {row["stage"]: row for row in generation["stages"]}
        assert list(rows)[-4:] == ["verify_k", "d_verify", "top_k", "proxy"]
        assert rows["d_verify"]["in"] == rows["verify_k"]["out"]
        assert rows["proxy"]["in"] == rows["top_k"]["out"]
    # the cut before the proxy ranks by D_verify AP: K distinct candidates that reached the proxy
    # task scored at least as well on D_verify as every candidate the cut turned away (copies
    # of a chosen one, same simulation fingerprint, go on with it whatever their own AP: the fake
    # training scores formula texts, a real one would give equivalent losses the same AP)
    records = _records(out)
    for generation in range(1, settings.generations + 1):
        recs = [r for r in records if r["generation"] == generation and "d_verify" in r["scores"]]
        sent = [r["scores"]["d_verify"] for r in recs if "proxy" in r["scores"]]
        cut = [r["scores"]["d_verify"] for r in recs if r["reason"] == "not_top_k"]
        if cut:
            assert sum(s >= max(cut) for s in sent) >= settings.top_k, (sent, cut)


def test_resume_trains_nothing_twice(faulty_run):
    settings, out, _ = faulty_run
    before = (out / "detector_results.jsonl").read_text()
    messages = []
    run_search(settings, resume=True, log=lambda *a, **k: messages.append(" ".join(map(str, a))))
    assert (out / "detector_results.jsonl").read_text() == before
    assert not any("training(s)" in m for m in messages)


def test_a_bad_detector_config_or_data_set_stops_the_cli_before_anything_runs(tmp_path, capsys):
    from jaxloss.search.cli import main as cli_main

    broken = tmp_path / "broken.py"
    broken.write_text("model = dict(\n")
    out = tmp_path / "run"
    cases = [(["--detector-config", str(tmp_path / "missing.py")], "no config"),
             (["--detector-config", str(broken)], "cannot be read as an MMDetection config"),
             (["--detector-config", "faster-rcnn_r18-tiny"],  # an RoI head, a cls_binary search
              "its heads take a different classification loss than --branch cls_binary"),
             (["--branch", "cls", "--detector-config", "fcos_r18-tiny"], "FCOSHead (cls_binary)"),
             (["--data", f"coco:{tmp_path / 'missing.json'}", "--images", str(tmp_path)],
              "missing.json: no such COCO annotation file"),
             (["--proxy-val", "100000"], "--proxy-val 100000: must be between 1 and")]
    for argv, words in cases:
        try:
            code = cli_main(argv + ["--out", str(out), "--generations", "1"])
        except SystemExit as stop:  # argparse's error exit
            code = stop.code
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err, (argv, err)
        assert not (out / "candidates.jsonl").exists() and not (out / "trainings").exists()


def test_the_paper_scale_detector_configs_fit_their_branches():
    from bridge.search_stages import DetectorSetup, check_detector_config
    from jaxloss.search.settings import load_config

    for path in sorted(ROOT.glob("configs/search/*.toml")):
        settings = validate(Settings(**load_config(path)))
        check_detector_config(DetectorSetup.from_search(settings.to_json()))


@pytest.mark.parametrize("executor", ["ray"])
def test_ray_executor_gives_the_local_result(tmp_path, executor):
    pytest.importorskip("ray")
    import ray

    settings = dict(FAKE, generations=1, population=80)
    local = run_search(validate(Settings(out=str(tmp_path / "local"), **settings)),
                       log=lambda *a, **k: None)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        remote = run_search(validate(Settings(out=str(tmp_path / "ray"), executor=executor,
                                              **settings)), log=lambda *a, **k: None)
    finally:
        ray.shutdown()
    for key in ("best", "fitness", "archive", "funnel"):
        assert remote[key] == local[key], key


FLAKY = dict(FAKE, population=120, top_k=3, verify_k=6, train_timeout=60.0,
             detector_task="tests.faults:flaky_training")


def _comparable(report: dict) -> dict:
    """A report without what differs between two runs of the same search: time and run folder."""
    out = {k: v for k, v in report.items() if k != "seconds"}
    out["settings"] = {k: v for k, v in report["settings"].items() if k != "out"}
    return out


def test_killed_worker_then_sigterm_then_resume_gives_the_undisturbed_report(tmp_path):
    """A worker killed on its first attempt is retried at once; SIGTERM during a training of
    generation 2 stops the search cleanly (exit 143, nothing recorded for the trainings in
    flight); --resume trains them again and ends with the report of an undisturbed run."""
    reference = run_search(validate(Settings(out=str(tmp_path / "ref"), **FLAKY)),
                           log=lambda *a, **k: None)
    config = tmp_path / "flaky.json"
    config.write_text(json.dumps(FLAKY))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "jaxloss.search", "--config", str(config),
                             "--out", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=python_env(), cwd=ROOT)
    seen, in_generation_2 = [], False
    deadline = time.time() + 600
    for line in proc.stdout:
        seen.append(line)
        in_generation_2 = in_generation_2 or line.startswith("generation 2/3")
        if in_generation_2 and "training(s)" in line and "d_verify" in line:
            time.sleep(0.2)  # the first trainings of generation 2 are running (0.4 s each)
            proc.send_signal(signal.SIGTERM)
            break
        assert time.time() < deadline, "".join(seen)
    rest, _ = proc.communicate(timeout=120)
    seen.append(rest)
    assert proc.returncode == 143, "".join(seen)
    assert "interrupted" in rest and f"--resume {run}" in rest, rest
    assert not (run / "report.json").exists()
    text = "".join(seen)
    generation_1 = text[text.index("generation 1/3"):text.index("generation 2/3")]
    assert "failed: crashed" in generation_1 and "once more on fresh workers" in generation_1
    results = [json.loads(l) for l in (run / "detector_results.jsonl").read_text().splitlines()]
    assert all(r["reason"] is None for r in results)  # the interrupt is no candidate's failure
    resumed = subprocess.run([sys.executable, "-m", "jaxloss.search", "--resume", str(run)],
                             capture_output=True, text=True, env=python_env(), cwd=ROOT,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "after generation 1" in resumed.stdout
    result = json.loads((run / "report.json").read_text())
    assert _comparable(result) == _comparable(reference)
    retried = [r for r in _records(run) if any(
        d.get("attempts") == ["crashed", None] for d in r.get("details", {}).values())]
    assert any(r["generation"] == 1 for r in retried)


def test_proxy_seeds_train_every_proxy_candidate_k_times_and_the_final_seeds_come_after(tmp_path):
    out = tmp_path / "run"
    settings = dict(FAKE, generations=1, population=80, proxy_seeds=2, final_k=1, final_seeds=2,
                    detector_task="tests.faults:fake_seeded_training")
    report = run_search(validate(Settings(out=str(out), **settings)), log=lambda *a, **k: None)
    proxy = [json.loads(line) for line in (out / "detector_results.jsonl").read_text().splitlines()]
    proxy = [r for r in proxy if r["stage"] == "proxy"]
    seeds_of: dict = {}
    for r in proxy:
        seeds_of.setdefault(r["formula"], set()).add(r["seed"])
    final = report["final"]
    assert final["seeds"] == [5, 6]  # the search's seed 3 and the proxy's second seed 4 are used
    initial = report["initial"]
    assert seeds_of[initial["formula"]] == {3, 4, 5, 6}  # the search's two, the final's two
    assert all({3, 4} <= s for s in seeds_of.values())  # every proxy candidate: both seeds
    mAP = {(r["formula"], r["seed"]): r["result"]["mAP"] for r in proxy if r["reason"] is None}
    expected = (mAP[initial["formula"], 3] + mAP[initial["formula"], 4]) / 2
    assert initial["fitness"] == pytest.approx(expected, rel=1e-6)

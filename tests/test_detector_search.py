"""The search with detector stages: failures isolated, results cached, Ray as good as local.

Trainings are replaced by ``tests.faults.fake_training`` (instant, deterministic, faulty for some
formulas) so that these tests exercise the stages, the executors and the bookkeeping in seconds;
``tests/test_bridge_train.py`` trains real detectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jaxloss.search import Settings, run_search
from jaxloss.search.settings import validate

FAKE = dict(branch="cls_binary", population=150, generations=3, top_k=6, capacity=24, seed=3,
            verify_iters=5, train_timeout=4.0, workers=2, detector_task="tests.faults:fake_training")


ROOT = Path(__file__).resolve().parent.parent


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
    from bridge.search_stages import DetectorSettings, check_detector_config
    from jaxloss.search.settings import load_config

    for path in sorted(ROOT.glob("configs/search/*.toml")):
        check_detector_config(DetectorSettings.from_search(load_config(path)))


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

"""python -m bridge.compare: statistics, resuming, machine failures, errors.

Trainings are replaced by ``tests.faults.fake_seeded_training`` (instant, deterministic from the
formula and the seed) so that these tests exercise the protocol, the workers, the cache and the
table in seconds; the one real training is marked slow.
"""

from __future__ import annotations

import json
import math

import pytest

from bridge import compare as cmp
from jaxloss.space.library import LIBRARY
from tests.faults import fake_seeded_training

FAKE = ["--task", "tests.faults:fake_seeded_training"]
T_975 = {2: 4.302652729911275, 3: 3.182446305284263, 4: 2.7764451051977987}
"""Student's t 97.5% quantiles by degrees of freedom (printed tables)."""


def _run(capsys, argv):
    code = cmp.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_t_quantiles():
    for df, value in T_975.items():
        assert cmp.t_quantile(0.975, df) == pytest.approx(value, rel=1e-9)


def test_the_table_matches_a_hand_computation(tmp_path, capsys):
    out = tmp_path / "cmp"
    seeds = [0, 1, 2, 3]
    code, text, err = _run(capsys, ["--loss-cls", "FL", "FLI", "BCE", "--seeds", *map(str, seeds),
                                    "--out", str(out), *FAKE])
    assert code == 0, err
    report = json.loads((out / "compare.json").read_text())
    assert report["reference"] == "FL" and report["complete"] and report["seeds"] == seeds
    maps = {name: [fake_seeded_training(str(LIBRARY[name]), "", seed=s)["mAP"] for s in seeds]
            for name in ("FL", "FLI", "BCE")}
    for name, values in maps.items():
        row = report["losses"][name]
        mean = sum(values) / 4
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
        assert row["per_seed"] == {str(s): v for s, v in zip(seeds, values)}
        assert row["n"] == 4
        assert row["mean"] == pytest.approx(mean, abs=1e-12)
        assert row["std"] == pytest.approx(std, abs=1e-12)
        assert row["relative_noise"] == pytest.approx(std / mean, rel=1e-9)
        assert f"{mean:.4f} ± {std:.4f}" in text
        if name == "FL":
            assert "diff" not in row
            continue
        diffs = [a - b for a, b in zip(values, maps["FL"])]
        dmean = sum(diffs) / 4
        dsd = math.sqrt(sum((d - dmean) ** 2 for d in diffs) / 3)
        half = T_975[3] * dsd / 2
        assert row["diff"]["mean"] == pytest.approx(dmean, abs=1e-12)
        assert row["diff"]["n"] == 4 and row["diff"]["reference"] == "FL"
        assert row["diff"]["ci"] == pytest.approx([dmean - half, dmean + half], abs=1e-12)
        assert f"{dmean:+.4f} [{dmean - half:+.4f}, {dmean + half:+.4f}]" in text
    # the progress display: one line per finished training, with the count left
    progress = [line for line in text.splitlines() if line.startswith("[")]
    assert len(progress) == 12 and progress[-1].startswith("[12/12]") and "0 to go" in progress[-1]
    # the per-training results
    entries = _jsonl(out / "trainings.jsonl")
    assert len(entries) == 12 and {e["seed"] for e in entries} == set(seeds)
    assert all(e["reason"] is None and e["result"]["mAP"] == maps[e["loss"]][e["seed"]]
               for e in entries)


def test_the_default_protocol_is_the_search_proxy_task(tmp_path):
    from bridge.search_stages import MIN_PROXY_ITERS
    from jaxloss.search.settings import Settings

    protocol = cmp.make_protocol("cls_binary", tmp_path)
    train = json.loads((tmp_path / "data" / "proxy_train.json").read_text())
    val = json.loads((tmp_path / "data" / "proxy_val.json").read_text())
    n = len(train["images"])
    assert protocol.config == "fcos_r18-tiny" and protocol.data_seed == Settings().seed == 0
    assert protocol.training["iters"] == max(MIN_PROXY_ITERS, Settings().proxy_epochs * math.ceil(n / 2))
    assert protocol.training["data"] == f"coco:{tmp_path / 'data' / 'proxy_train.json'}"
    assert protocol.training["val"] == f"coco:{tmp_path / 'data' / 'proxy_val.json'}"
    assert len(val["images"]) == max(1, (n + len(val["images"])) // 4)  # the search's held-out share
    assert cmp.make_protocol("reg", tmp_path / "r").config == "fcos_r18-tiny"
    assert cmp.make_protocol("cls", tmp_path / "c").config == "faster-rcnn_r18-tiny"
    longer = cmp.make_protocol("cls_binary", tmp_path / "l", iters=450)
    assert longer.training["iters"] == 450
    # what decides a training decides its key; the time limit and the folder do not
    key = cmp.task_key(protocol, str(LIBRARY["FL"]), 0)
    assert key == cmp.task_key(cmp.make_protocol("cls_binary", tmp_path / "elsewhere",
                                                 timeout_s=5.0), str(LIBRARY["FL"]), 0)
    assert len({key, cmp.task_key(protocol, str(LIBRARY["FL"]), 1),
                cmp.task_key(protocol, str(LIBRARY["FLI"]), 0),
                cmp.task_key(longer, str(LIBRARY["FL"]), 0)}) == 4


def test_a_rerun_trains_only_what_is_missing(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["--loss-cls", "FL", "FLI", "--seeds", "0", "1", "2", "--out", str(out), *FAKE]
    code, text, _ = _run(capsys, argv)
    assert code == 0 and "6 training(s) to run" in text
    before = (out / "trainings.jsonl").read_text()
    code, again, _ = _run(capsys, argv)
    assert code == 0 and "0 training(s) to run" in again and not any(
        line.startswith("[") for line in again.splitlines())
    assert (out / "trainings.jsonl").read_text() == before
    assert json.loads((out / "compare.json").read_text())["losses"]["FLI"]["n"] == 3
    # a new loss and a new seed: only their trainings run; a library name and its formula share one
    code, more, _ = _run(capsys, ["--loss-cls", str(LIBRARY["FL"]), "FLI", "BCE", "--seeds", "0",
                                  "1", "2", "3", "--out", str(out), *FAKE])
    assert code == 0 and "6 training(s) to run, 6 from" in more
    assert len(_jsonl(out / "trainings.jsonl")) == 12


def test_the_branch_and_detector_follow_the_losses(tmp_path, capsys):
    # library names of the softmax branch: the search's two-stage detector; a formula may begin
    # with '-' without --loss-cls=...
    code, text, err = _run(capsys, ["--loss-cls", "CE", "-dot(w*y, log(softmax(x)))", "--seeds",
                                    "0", "1", "--out", str(tmp_path / "c"), *FAKE])
    assert code == 0, err
    report = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert report["protocol"]["config"] == "faster-rcnn_r18-tiny"
    assert report["protocol"]["branch"] == "cls"
    assert list(report["losses"]) == ["CE", "-dot(w*y, log(softmax(x)))"]  # labels as given
    assert report["losses"]["-dot(w*y, log(softmax(x)))"]["formula"] == str(LIBRARY["CEI"])
    code, text, err = _run(capsys, ["--loss-reg", "GIoU", "IoU", "--seeds", "0", "1", "--out",
                                    str(tmp_path / "r"), *FAKE])
    report = json.loads((tmp_path / "r" / "compare.json").read_text())
    assert code == 0 and (report["protocol"]["config"], report["protocol"]["branch"]) == (
        "fcos_r18-tiny", "reg")


def test_a_failing_loss_is_a_final_result(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["--loss-cls", "FL", "bad=-y*log(sigmoid(x)) + exp(x)", "--seeds", "0", "1",
            "--out", str(out), *FAKE]
    code, text, _ = _run(capsys, argv)
    assert code == 0
    row = json.loads((out / "compare.json").read_text())["losses"]["bad"]
    assert row["n"] == 0 and row["mean"] is None and row["failed"] == {"0": "nonfinite",
                                                                        "1": "nonfinite"}
    assert "nonfini" in text and "bad = " in text
    code, again, _ = _run(capsys, argv)
    assert code == 0 and "0 training(s) to run" in again


def test_machine_failures_are_retried_and_never_cached(tmp_path, capsys):
    task = ["--task", "tests.faults:crash_once_training"]
    # without retries: the crashed training is recorded, not kept; the next run trains it again
    out = tmp_path / "no-retry"
    argv = ["--loss-cls", "FL", "--seeds", "0", "1", "--retries", "0", "--out", str(out), *task]
    code, text, err = _run(capsys, argv)
    assert code == 1 and "rerun the same command" in err and "failed: crashed" in text
    report = json.loads((out / "compare.json").read_text())
    assert not report["complete"] and report["losses"]["FL"]["failed"] == {"1": "not trained"}
    assert [e["reason"] for e in _jsonl(out / "trainings.jsonl")].count("crashed") == 1
    code, again, _ = _run(capsys, argv)
    assert code == 0 and "1 training(s) to run, 1 from" in again
    assert json.loads((out / "compare.json").read_text())["losses"]["FL"]["n"] == 2
    # with a retry: the same run tries it again
    out = tmp_path / "retry"
    code, text, _ = _run(capsys, ["--loss-cls", "FL", "--seeds", "0", "1", "--out", str(out),
                                  *task])
    assert code == 0 and "retrying 1 training(s)" in text
    assert [e["reason"] for e in _jsonl(out / "trainings.jsonl")] .count(None) == 2


def test_the_cache_never_keeps_a_machine_failure(tmp_path):
    path = tmp_path / "trainings.jsonl"
    cache = cmp.TrainingCache(path)
    for i, reason in enumerate((*sorted(cmp.MACHINE_FAILURES), None, "nonfinite")):
        cache.put({"task": f"k{i}", "reason": reason, "result": None})
    path.write_text(path.read_text() + '{"task": "cut sh')  # a line a kill cut short
    reread = cmp.TrainingCache(path)
    assert set(reread.entries) == {f"k{len(cmp.MACHINE_FAILURES)}",
                                   f"k{len(cmp.MACHINE_FAILURES) + 1}"}
    assert set(reread.entries) == set(cache.entries)


@pytest.mark.parametrize("argv, words", [
    (["--loss-cls", "FLX"], "--loss-cls FLX: no library loss of that name (did you mean FL, FLI"),
    (["--loss-cls", "-y*log(sigmoid(x)"], "not a cls_binary formula"),
    (["--loss-cls", "FL", "CE"], "--loss-cls CE: a cls loss, but this comparison trains "
                                 "cls_binary"),
    (["--config", "no-such-config", "--loss-cls", "FL"], "--config: no config 'no-such-config'"),
    (["--config", "faster-rcnn_r18-tiny", "--loss-cls", "FL"], "a cls_binary loss, but this "
                                                               "comparison trains cls losses"),
    (["--loss-cls", "FL", "--loss-reg", "IoU"], "give --loss-cls or --loss-reg, not both"),
    (["--loss-reg", "FL"], "--loss-reg FL: a cls_binary loss"),
    ([], "no losses"),
    (["--loss-cls", "FL", "FL"], "a loss is named twice: FL"),
    (["--loss-cls", "FL", "--seeds", "1", "1"], "a seed is given twice"),
    (["--loss-cls", "FL", "--task", "tests.faults:no_such_function"], "--task tests.faults:"
                                                                      "no_such_function: cannot"),
    (["--loss-cls", "FL", "--proxy-val", "100000"], "--proxy-val 100000: must be between 1 and"),
    (["--loss-cls", "FL", "--iters", "0"], "--iters 0: a training needs at least 1 iteration"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    code, _, err = _run(capsys, argv + ["--out", str(tmp_path / "cmp"), *(
        FAKE if "--task" not in argv else [])])
    assert code == 2, err
    assert words in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cmp" / "trainings.jsonl").exists()


def test_a_bad_data_set_is_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = _run(capsys, ["--loss-cls", "FL", "--data", f"coco:{tmp_path / 'missing.json'}",
                                 "--images", str(tmp_path), "--out", str(tmp_path / "c"), *FAKE])
    assert code == 2 and "missing.json" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_real_tiny_training(tmp_path, capsys):
    out = tmp_path / "real"
    code, text, err = _run(capsys, ["--loss-cls", "FL", "--seeds", "0", "--iters", "3",
                                    "--out", str(out), "--timeout", "600"])
    assert code == 0, err
    entry = _jsonl(out / "trainings.jsonl")[0]
    assert entry["reason"] is None and 0.0 <= entry["result"]["mAP"] <= 1.0
    assert entry["iters"] == 3 and (out / "trainings" / entry["task"] / "train.log").exists()

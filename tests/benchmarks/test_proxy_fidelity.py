"""benchmarks/proxy_fidelity.py on fake trainings: the fields the report promises, computed from
the per-seed values, on a protocol other than the default (``--config``, ``--data``)."""

from __future__ import annotations

import json
import math

import numpy as np

from benchmarks import proxy_fidelity


def test_the_report_gives_noise_and_orderings_from_the_per_seed_values(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setenv("JAXLOSS_CACHE_DIR", str(tmp_path / "cache"))
    assert proxy_fidelity.main([
        "--quick", "--json", "--out", str(tmp_path / "out"), "--workers", "1",
        "--task", "tests.faults:fake_seeded_training",
        "--config", "fcos_r18-tiny-256", "--data", "embedded:224"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["complete"] and not r["default_protocol"] and r["seeds"] == [0, 1, 2]
    assert r["protocol"]["one_stage"]["config"] == "fcos_r18-tiny-256"
    assert r["protocol"]["box"]["config"] == "fcos_r18-tiny-256"
    assert "embedded:224 (train)" in r["protocol"]["one_stage"]["data"]
    assert (tmp_path / "out" / "fcos_r18-tiny-256-embedded224" / "one_stage").is_dir()
    assert set(r["losses"]) == {"FL", "FLI", "BCE", "FL+GIoU", "FL+IoU"}
    for name, row in r["losses"].items():
        values = [row["per_seed"][str(s)] for s in r["seeds"]]
        assert row["mean"] == np.mean(values) and math.isclose(row["std"], np.std(values, ddof=1))
        assert r["relative_noise"][name] == row["std"] / row["mean"]
    fl, bce = r["losses"]["FL"], r["losses"]["BCE"]
    o = r["orderings"]
    assert o["fl_gt_bce"] == (fl["mean"] > bce["mean"])
    pooled = math.sqrt((fl["std"] ** 2 + bce["std"] ** 2) / 2)
    assert math.isclose(o["fl_gt_bce_margin_in_std"], (fl["mean"] - bce["mean"]) / pooled)
    assert math.isclose(o["fl_gt_bce_paired_diff"]["mean"], fl["mean"] - bce["mean"])
    assert o["giou_ge_iou"] == (r["losses"]["FL+GIoU"]["mean"] >= r["losses"]["FL+IoU"]["mean"])

"""benchmarks/discovery.py on fake trainings: the three strategies spend the same proxy budget and
the table reports the fresh-seed result against L_I."""

from __future__ import annotations

import json

from benchmarks import discovery


def test_the_strategies_spend_the_same_proxy_budget_and_report_the_fresh_seed_result(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(discovery, "QUICK", dict(population=60, generations=2, top_k=2,
                                                 final_k=1, final_seeds=2))
    assert discovery.main(["--quick", "--json", "--out", str(tmp_path),
                           "--detector-task", "tests.faults:fake_seeded_training"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["proxy_budget"] == 4
    rows = {r["strategy"]: r for r in result["runs"]}
    assert set(rows) == {"cse", "vanilla", "random"}
    for name, row in rows.items():
        # L_I in generation 0, then at most top_k a generation (copies share a training)
        assert 1 <= row["proxy_trainings"] <= 1 + result["proxy_budget"], name
        assert row["distinct_losses_trained"] == row["proxy_trainings"]
        assert row["fresh_seeds"] == [1, 2]
        if row["best_fresh"]:
            pairs = [b - a for a, b in zip(row["initial_fresh"]["values"],
                                           row["best_fresh"]["values"])]
            assert abs(row["best_vs_initial"]["mean"] - sum(pairs) / 2) < 1e-9
    # vanilla and random skip the property checks, the simulation and D_verify
    for name in ("vanilla", "random"):
        assert "property" not in rows[name]["totals"] and "d_verify" not in rows[name]["totals"]
        assert "simulation" not in rows[name]["totals"]
    assert "d_verify" in rows["cse"]["totals"] and "simulation" in rows["cse"]["totals"]

"""Constant tuning with CMA-ES (jaxloss.tune): the graph it tunes, its scores, its torch form."""

from __future__ import annotations

import json

import numpy as np
import pytest

import jaxloss
from jaxloss.evolution.tune import graph_function, simulation_scores, tune_constants
from jaxloss.filters import minisim
from jaxloss.search import Settings, run_search
from jaxloss.search.settings import SettingsError, validate
from jaxloss.space.graph import unshare_constants
from jaxloss.space.library import LIBRARY


def test_every_use_of_a_whole_number_becomes_one_parameter():
    loss = jaxloss.parse("12 * (1 - y) * log(1 - sigmoid(x)) + exp(3)", "cls_binary")
    nodes, slots, start = unshare_constants(loss.graph)
    # 12 (built as 3*(2*2)) is one constant; the two 1s are tuned separately; exp(3) reads a 3
    assert sorted(start) == [1.0, 1.0, 3.0, 12.0]
    from jaxloss.space.printing import to_text

    assert jaxloss.parse(to_text(nodes, dict(zip(slots, start))), "cls_binary").key == loss.key
    assert to_text(nodes, dict(zip(slots, [0.5] * len(slots)))).count("0.5") == 4
    assert unshare_constants(LIBRARY["CEI"].graph)[1] == ()
    with pytest.raises(ValueError, match="constant"):
        unshare_constants(jaxloss.parse("2 * 3", "reg").graph)


@pytest.mark.parametrize("name", ["FLI", "CSE-Autoloss-B_cls"])
def test_the_graph_function_computes_what_evaluate_computes(name):
    loss = LIBRARY[name]
    rng = np.random.default_rng(0)
    inputs = {"x": rng.normal(0, 3, 64).astype(np.float32),
              "y": (rng.random(64) < 0.3).astype(np.float32),
              "w": rng.uniform(0.2, 1, 64).astype(np.float32)}
    nodes, slots, start = unshare_constants(loss.graph)
    f = graph_function(nodes, loss.branch, slots)
    got = np.asarray(f(np.asarray(start, np.float32), {k: v[:, None] for k, v in inputs.items()}))
    np.testing.assert_allclose(got, np.asarray(jaxloss.evaluate([loss], **inputs))[0], rtol=1e-5,
                               atol=1e-6)


def test_tuning_scores_the_start_as_the_search_does_and_never_ends_worse():
    loss = LIBRARY["FLI"]
    nodes, slots, start = unshare_constants(loss.graph)
    score, bad = simulation_scores(nodes, loss.branch, slots, np.asarray([start], np.float32))
    assert not bad[0]
    assert score[0] == pytest.approx(float(minisim.simulate([loss]).score[0]), abs=1e-4)

    seen = []
    tuned = tune_constants(loss, generations=3, population_size=8, task_seeds=(0,),
                           progress=lambda g, best: seen.append((g, best)))
    assert [g for g, _ in seen] == [1, 2, 3]
    assert tuned.start_score == pytest.approx(float(score[0]))
    assert tuned.score >= tuned.start_score
    assert list(tuned.history) == sorted(tuned.history)
    assert all(np.sign(v) == np.sign(s) for v, s in zip(tuned.values, tuned.start))
    d = tuned.as_dict()
    assert d["formula"] == str(loss) and len(d["values"]) == len(slots) == 2
    assert d["task_seeds"] == [0]


def test_a_tuned_loss_trains_in_torch_with_its_constants():
    torch = pytest.importorskip("torch")
    from bridge import to_torch
    from jaxloss.evolution.tune import TunedLoss

    loss = LIBRARY["CSE-Autoloss-A_reg"]
    nodes, slots, start = unshare_constants(loss.graph)
    values = tuple(s * 1.3 for s in start)
    tuned = TunedLoss(loss, nodes, slots, start, values, 0.0, 0.0)
    rng = np.random.default_rng(1)
    i = rng.uniform(0, 50, 32).astype(np.float32)
    u = (i + rng.uniform(1, 50, 32)).astype(np.float32)
    e = (u + rng.uniform(0, 50, 32)).astype(np.float32)
    expected = np.asarray(tuned.function()({"i": i[:, None], "u": u[:, None], "e": e[:, None]}))
    module = to_torch(tuned)
    got = module(i=torch.tensor(i), u=torch.tensor(u), e=torch.tensor(e)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert "1.3" in repr(module)
    plain = to_torch(loss)(i=torch.tensor(i), u=torch.tensor(u), e=torch.tensor(e)).numpy()
    assert not np.allclose(got, plain)

    from bridge.module import LossModule

    with pytest.raises(ValueError, match="3 numeric constant"):
        LossModule(loss, [1.0])


def test_the_search_tunes_its_best_losses_when_asked(tmp_path):
    settings = validate(Settings(branch="cls_binary", population=64, generations=1, seed=1,
                                 detector=False, tune_constants=1, tune_generations=2,
                                 out=str(tmp_path / "run")))
    report = run_search(settings, log=lambda *a, **k: None)
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["tuned"] == report["tuned"]
    best = jaxloss.parse(report["best"], "cls_binary", max_nodes=None)
    assert bool(report["tuned"]) == bool(unshare_constants(best.graph)[1])
    if report["tuned"]:  # a best loss without numeric constants is skipped
        t = report["tuned"][0]
        assert t["formula"] == report["best"] and t["score"] >= t["start_score"]
        assert "constants=" in (tmp_path / "run" / "report.md").read_text()
    with pytest.raises(SettingsError, match="tune-constants"):
        validate(Settings(tune_constants=-1))


def test_searched_loss_takes_the_tuned_constants_in_a_config_line():
    torch = pytest.importorskip("torch")
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS

    import bridge.mmdet  # noqa: F401 - registers SearchedLoss
    from bridge import to_torch

    loss = LIBRARY["FLI"]
    cfg = dict(type="SearchedLoss", branch="cls_binary", formula=str(loss), alpha=None,
               reduction="none", constants=[1.2, 0.9])
    module = MODELS.build(cfg)
    x, y = torch.linspace(-4, 4, 9), torch.tensor([1.0, 0.0] * 4 + [1.0])
    # mmdet labels: class 0 of 1 (positive) or 1 (background); w = IoU = 1
    got = module(x[:, None], y.long().sub(1).abs(), iou=torch.ones(9))
    nodes, slots, start = unshare_constants(loss.graph)
    from jaxloss.evolution.tune import TunedLoss

    want = to_torch(TunedLoss(loss, nodes, slots, start, (1.2, 0.9), 0.0, 0.0))(
        x=x, y=y, w=torch.ones(9))
    np.testing.assert_allclose(got.reshape(-1).detach().numpy(), want.detach().numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="numeric constant"):
        MODELS.build(dict(cfg, constants=[1.0]))

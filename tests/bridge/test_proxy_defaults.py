"""Defaults of the detector stages that decide the cost and noise of a default search: trainings at
once, generations, one training per function (no trainings run: the stage's ``train`` is
replaced)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxloss.genome.population import from_graphs
from jaxloss.search.settings import Settings, SettingsError, validate
from jaxloss.space.parse import parse_graph


@pytest.mark.parametrize("gpus, per_training, cpus, expected", [
    ([], None, 1, 1), ([], None, 2, 2), ([], None, 3, 3), ([], None, 64, 4),
    (["0"], None, 64, 1), ([str(i) for i in range(8)], None, 2, 8),
    ([str(i) for i in range(8)], 4, 2, 2), ([str(i) for i in range(8)], 8, 2, 1),
    (["4", "5", "6"], 2, 16, 1)])
def test_default_workers_one_per_gpu_group_else_one_per_core_up_to_four(gpus, per_training,
                                                                         cpus, expected):
    from bridge.executor import default_workers

    assert default_workers(per_training, gpus, cpus=cpus) == expected


def test_workers_left_out_take_the_machine_default_and_each_gets_its_share_of_the_cores(
        monkeypatch):
    import os

    import bridge.executor
    from bridge.search_stages import DetectorSetup

    monkeypatch.setattr(bridge.executor, "visible_gpus", lambda: [])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    d = DetectorSetup.from_search(dict(branch="cls_binary", seed=0))
    assert d.workers == 2
    assert DetectorSetup.from_search(dict(branch="cls_binary", seed=0, workers=1)).workers == 1
    # a Ray task goes where the cluster has room; the number only sets the threads of each
    assert DetectorSetup.from_search(dict(branch="cls_binary", seed=0,
                                          executor="ray")).workers == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_whole_number(bad):
    with pytest.raises(SettingsError, match="--workers"):
        validate(Settings(workers=bad))


def test_generations_default_to_fewer_with_the_detector_stages():
    from bridge.search_stages import GENERATIONS

    assert validate(Settings()).generations == GENERATIONS == 3
    assert validate(Settings(detector=False)).generations == 5
    assert validate(Settings(generations=7)).generations == 7
    assert validate(Settings(detector=False, generations=2)).generations == 2


def test_candidates_that_train_identically_share_one_training(tmp_path):
    from bridge.search_stages import DetectorSetup, ProxyStage, SearchData

    texts = ["-log(sigmoid(x))", "-(log(sigmoid(x)))  * 1", "-2 * log(sigmoid(x))",
             "-log(sigmoid(x))", "2 * w - log(sigmoid(x))"]
    graphs = [parse_graph(t, "cls_binary") for t in texts]
    pop = from_graphs(graphs, "cls_binary", 24)
    assert len({l.key for l in pop.losses()}) == 4  # two spellings of one function, one twice

    stage = ProxyStage(DetectorSetup.from_search(dict(branch="cls_binary", seed=0, workers=1)),
                       SearchData("images", "v.json", "t.json", "pv.json", 10, ""), tmp_path,
                       None, None, print)
    asked = []

    def train(formulas, seed=None):
        asked.append(dict(formulas))
        return {k: {"reason": None, "result": {"mAP": 0.1 * (i + 1)}}
                for i, k in enumerate(formulas)}

    stage.train = train
    # 0, 1 and 3 compute the same function; 4 differs from it by 2w, which has no x in it (w is
    # the detached IoU), so the same gradient and the same training; 2 has twice the gradient
    context = {"generation": 1}
    out = stage.run(pop, np.arange(5), context)
    assert len(asked) == 1 and len(asked[0]) == 2  # one training per function
    assert out.score[0] == out.score[1] == out.score[3] == out.score[4] != out.score[2]
    assert out.details[0] is None and out.details[3] is None  # index 3 is index 0's own copy
    assert out.details[1] == out.details[4] == {"same_function_as": str(pop[0])}
    assert out.passed.all()


def test_proxy_seeds_train_each_candidate_k_times_and_score_the_mean(tmp_path):
    """--proxy-seeds K: every distinct candidate trained with the search's seed and the K - 1
    after it, its fitness the mean; a failed seed fails it; the final measurement's fresh seeds
    come after all of them."""
    from bridge.search_stages import DetectorSetup, ProxyStage, SearchData

    pop = from_graphs([parse_graph(t, "cls_binary") for t in
                       ["-log(sigmoid(x))", "-2 * log(sigmoid(x))", "exp(x)"]], "cls_binary", 24)
    d = DetectorSetup.from_search(dict(branch="cls_binary", seed=5, workers=1, proxy_seeds=3))
    stage = ProxyStage(d, SearchData("images", "v.json", "t.json", "pv.json", 10, ""), tmp_path,
                       None, None, print)
    asked = []

    def train(formulas, seed=None):
        asked.append(seed)
        return {k: ({"reason": "nan_loss"} if "exp" in f and seed == 6 else
                    {"reason": None, "result": {"mAP": 0.1 * (i + 1) + 0.01 * (seed - 5)}})
                for i, (k, f) in enumerate(formulas.items())}

    stage.train = train
    assert stage.seeds() == stage.seeds_used() == [5, 6, 7]
    out = stage.run(pop, np.arange(3), {"generation": 1})
    assert asked == [5, 6, 7]
    np.testing.assert_allclose(out.score[:2], [0.11, 0.21], rtol=1e-6)  # means over the seeds
    assert out.details[0]["per_seed"] == pytest.approx({"5": 0.1, "6": 0.11, "7": 0.12})
    assert np.isnan(out.score[2]) and out.reasons[2] == "nan_loss" and not out.passed[2]
    assert "mean mAP over 3 seeds" in stage.describe()
    with pytest.raises(SettingsError, match="--proxy-seeds: a whole number >= 1"):
        validate(Settings(proxy_seeds=0))

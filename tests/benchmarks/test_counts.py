"""benchmarks/common.py and the throughput benchmarks: the node counting behind "useful node
evaluations" (the engine's split of point-wise and constant nodes; dead nodes left out), the
value agreement, the core pinning, and that the raw comparison's two sides do the same work.
No timings are asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from benchmarks.common import format_cpus, node_counts, node_masks, values_agreement
from jaxloss.engine.batched import analyse
from jaxloss.genome.population import from_graphs, from_losses
from jaxloss.space import ops

ROOT = Path(__file__).resolve().parents[2]


def test_constant_subexpressions_count_once_per_genome_not_per_point():
    pop = from_losses([jaxloss.parse(t, "cls_binary") for t in
                       ("log(1+exp(-x)) * (2+3)", "log(1+exp(-x)) * (2*3+w)", "2+3", "x")])
    counts = node_counts(pop)
    # -x, exp, 1+, log, * depend on x; 2+3 is folded once
    assert counts["pointwise"].tolist() == [5, 6, 0, 0]
    assert counts["constant"].tolist() == [1, 1, 1, 0]
    assert counts["dead"].tolist() == [0, 0, 0, 0]
    assert counts["operators"].tolist() == [6, 7, 1, 0]


def test_nodes_the_output_does_not_read_are_not_useful():
    c = ops.code
    graph = [(c("x"), 0, 0), (c("1"), 0, 0),
             (c("exp"), 0, 0),  # dead, point-wise
             (c("add"), 1, 1),  # dead, constant
             (c("neg"), 0, 0), (c("exp"), 4, 0), (c("add"), 1, 5), (c("log"), 6, 0)]
    counts = node_counts(from_graphs([graph], "cls_binary", 16))
    assert {k: int(v[0]) for k, v in counts.items()} == {
        "pointwise": 4, "constant": 0, "dead": 2, "operators": 6}


@pytest.mark.parametrize("branch", ["cls", "cls_binary", "reg"])
def test_the_point_wise_split_is_the_engines_own(branch):
    pop = jaxloss.sample(branch, 300, seed=3, max_nodes=16, min_nodes=3).numpy()
    masks = node_masks(pop)
    facts = analyse(*(jnp.asarray(a) for a in (pop.ops, pop.lhs, pop.rhs, pop.size)),
                    branch_name=branch, num_classes=1, tangent_inputs=())
    used = np.arange(pop.capacity)[None, :] < pop.size[:, None]
    np.testing.assert_array_equal(masks["depends"] & used, np.asarray(facts["depends"]) & used)
    counts = node_counts(pop)
    assert np.all(counts["pointwise"] + counts["constant"] + counts["dead"]
                  == counts["operators"])
    assert counts["constant"].sum() > 0 and counts["pointwise"].sum() > 0


def test_value_agreement_wants_the_same_nonfinite_entries_and_close_finite_ones():
    a = np.array([[1.0, np.nan, np.inf, 2.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = a.copy()
    b[1, 0] = 1.00001  # within 1e-4 relative
    b[2, 3] = np.inf  # a non-finite entry where the other is finite
    out = values_agreement(a, b)
    assert (out["candidates"], out["same_values"]) == (3, 2)
    assert values_agreement(a, a + np.array([0, 0, 0, 1e-2]))["same_values"] == 0
    assert values_agreement(a, a * (1 + 1e-6))["same_values"] == 3
    c = a.copy()
    c[0, 2] = -np.inf
    assert values_agreement(a[:1], c[:1])["same_values"] == 0


def test_cpus_print_as_ranges():
    assert format_cpus([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert format_cpus([5]) == "5"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_use_cores_confines_the_process_and_refuses_too_many():
    code = ("import os, threading\n"
            "from benchmarks.common import use_cores\n"
            "cpus = use_cores(1)\n"
            "seen = []\n"
            "t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))\n"
            "t.start(); t.join()\n"
            "print(cpus, sorted(os.sched_getaffinity(0)), sorted(seen[0]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    first = sorted(os.sched_getaffinity(0))[0]
    assert done.stdout.split("\n")[0] == f"[{first}] [{first}] [{first}]"
    too_many = len(os.sched_getaffinity(0)) + 1
    done = subprocess.run([sys.executable, "-c",
                           f"from benchmarks.common import use_cores; use_cores({too_many})"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and f"--cores {too_many}" in done.stderr


def _json_run(module: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", module, "--json", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_evaluate_throughput_compares_the_same_candidates_points_and_cores():
    cores = min(2, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1
    r = _json_run("benchmarks.evaluate_throughput", "--candidates", "60", "--points", "256",
                  "--torch-candidates", "40", "--cores", str(cores))
    c, e = r["cores"], r["engines"]
    assert c["jaxloss"] == c["torch_eager"] == cores == c["jaxloss_cpu_devices"]
    assert c["equal_terms"] is True and c["torch_eager_threads"] == cores
    eager = {"torch_eager"} | ({"torch_eager_processes"} if cores > 1 else set())
    assert set(e) == {"jaxloss", "jaxloss_same_candidates"} | eager
    assert e["jaxloss"]["candidates"] == 60
    for name in eager | {"jaxloss_same_candidates"}:
        assert (e[name]["candidates"], e[name]["points"], e[name]["cores"]) == (40, 256, cores)
    assert r["raw_baseline"] in eager and set(r["raw_speedup_by_baseline"]) == eager
    # against the faster PyTorch eager engine: the smaller speed-up
    assert r["raw_speedup_vs_torch_eager"] == min(r["raw_speedup_by_baseline"].values())
    for name in eager:
        agreement = r["same_work"]["values_vs_jaxloss"][name]
        assert agreement["candidates"] == 40 and agreement["fraction"] >= 0.9
    w = r["workload"]
    assert w["pointwise_nodes_mean"] + w["constant_nodes_mean"] + w["dead_nodes_mean"] \
        == pytest.approx(w["operator_nodes_mean"])
    # the corrected counting evaluates fewer nodes than every operator at every point
    assert 0 < r["useful_node_evals_per_s"] < r["operator_nodes_x_points_per_s"]
    for key in ("speedup_vs_torch_eager", "raw_elementwise_per_s", "useful_fraction_of_raw",
                "cpu_devices", "machine"):
        assert key in r, key

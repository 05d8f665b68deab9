"""benchmarks/gpu_check.py and scripts/gpu_check.sh, on the CPU: the JSON's shape and figures of the
parts that run in seconds (--device cpu --quick), the configs without pretrained weights, the
refusal without a CUDA device. (On a GPU: scripts/gpu_check.sh.)"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _run(args, tmp_path, timeout=900, env=None):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--json",
                           "--work-dir", str(tmp_path / "work"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env or dict(os.environ))
    return done, (json.loads(done.stdout) if done.stdout.strip() else None)


def test_quick_cpu_check_reports_every_part_with_numbers(tmp_path):
    done, report = _run(["--device", "cpu", "--quick"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report["ok"] is True and report["device"] == "cpu" and report["quick"] is True
    assert _number(report["seconds"]) and set(report["parts"]) == set(gpu_check.PARTS)
    parts = report["parts"]
    for name in gpu_check.TRAININGS:  # no R50 on a CPU
        assert parts[name] == {"ok": None, "skipped": "--quick runs no training"}
    ran = {n: p for n, p in parts.items() if n not in gpu_check.TRAININGS}
    for name, part in ran.items():
        assert part["ok"] is True and _number(part["seconds"]), name

    devices = parts["devices"]
    assert devices["cuda_available"] is False and devices["jax_backend"] == "cpu"
    assert devices["mmcv_ops_cuda"] == "not available"

    f = parts["filter_throughput"]
    assert f["jax_backend"] == "cpu" and f["candidates"] == 300
    for key in ("candidates_per_s", "candidates_per_s_full_grid", "compile_seconds",
                "torch_eager_candidates_per_s", "speedup_vs_torch_eager",
                "useful_node_evals_per_s", "raw_elementwise_per_s"):
        assert _number(f[key]) and f[key] > 0, key
    assert f["target_candidates_per_s"] == 1_000_000
    assert f["meets_target"] == (f["candidates_per_s"] >= 1_000_000)
    required = {"jaxloss", "jaxloss_full_grid", "torch_eager", "jax_jit_per_candidate",
                "numpy_loop"}
    c = f["cores"]
    assert set(f["engines"]) == required | ({"torch_eager_processes"}
                                            if c["torch_eager"] > 1 else set())
    # the raw comparison and the screen, apart; both sides on the same cores and the same work
    for key in ("raw_speedup_vs_torch_eager", "screen_speedup"):
        assert _number(f[key]) and f[key] > 0, key
    assert c["equal_terms"] is True and c["jaxloss"] == c["torch_eager"] >= 1
    assert c["jaxloss_cpu_devices"] == c["torch_eager_threads"] == c["torch_eager"]
    same = f["same_work"]
    assert (same["candidates"], same["points"]) == (300, 2048)
    assert same["values_vs_jaxloss_evaluate"]["fraction"] >= 0.9
    for name in ("torch_eager", "torch_eager_processes"):
        if name in f["engines"]:
            assert f["engines"][name]["candidates"] == 300 and f["engines"][name]["points"] == 2048
    assert same.get("torch_engines_same_verdicts", True) is True

    t = parts["to_torch"]
    assert t["torch_device"] == "cpu" and t["jax_backend"] == "cpu"
    assert set(t["losses"]) == set(gpu_check.TO_TORCH_LOSSES)
    for name, row in t["losses"].items():
        assert row["within_tolerance"] is True, name
        for key in ("values_max_abs_diff", "values_max_rel_diff", "grads_max_abs_diff",
                    "engine_vs_jax_function_max_abs_diff"):
            assert _number(row[key]) and row[key] >= 0, (name, key)
    assert 0 <= t["values_max_abs_diff"] < 1e-4 and 0 <= t["grads_max_abs_diff"] < 1e-3

    s = parts["search"]
    assert s["engine"].startswith("cpu") and s["population"] == 40 and s["generations"] == 2
    assert _number(s["wall_seconds"]) and _number(s["search_seconds"])
    assert len(s["generation_seconds"]) == 2 and all(map(_number, s["generation_seconds"]))
    assert _number(s["best_fitness"]) and isinstance(s["best"], str)


def test_cuda_without_a_cuda_device_stops_with_exit_2_and_says_why(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done, report = _run(["--device", "cuda"], tmp_path, timeout=300, env=env)
    assert done.returncode == 2
    assert report["ok"] is False and list(report["parts"]) == ["devices"]
    assert "no usable CUDA device" in report["error"]
    assert "gpu_check: no usable CUDA device" in done.stderr


def test_a_failing_part_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.TIMEOUT_S, "filter_throughput", 0.5)  # killed: a "crash"
    report, status = gpu_check.check("cpu", True, ["devices", "filter_throughput", "to_torch"],
                                     20, 600, tmp_path)
    assert status == 1 and report["ok"] is False
    assert report["parts"]["filter_throughput"]["ok"] is False
    assert "timed out" in report["parts"]["filter_throughput"]["error"]
    assert report["parts"]["to_torch"]["ok"] is True  # ran after the failure
    report, status = gpu_check.check("cpu", True, ["devices", "to_torch"], 20, 5, tmp_path)
    assert status == 1 and "not run" in report["parts"]["to_torch"]["error"]


@pytest.mark.parametrize("part", sorted(gpu_check.TRAININGS))
def test_the_paper_configs_lose_their_pretrained_weights_and_load_none(tmp_path, monkeypatch,
                                                                        part):
    from mmengine.config import Config
    from mmengine.runner import checkpoint

    import bridge.mmdet  # noqa: F401  (registers the bridge's losses and heads)
    from bridge import config as configs
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    name = gpu_check.TRAININGS[part]
    path, removed = gpu_check.config_without_pretrained(name, tmp_path)
    assert len(removed) == 1 and removed[0].startswith("model.backbone.init_cfg: ")
    assert ("://" in removed[0])  # open-mmlab://..., torchvision://...
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.init_cfg is None
    assert gpu_check._pretrained_paths(cfg.to_dict()) == []
    # the rest of the config is the paper's
    original = configs.load(name)
    assert cfg.model.type == original.model.type and cfg.model.neck == original.model.neck
    assert cfg.train_dataloader.batch_size == original.train_dataloader.batch_size

    def no_download(*args, **kwargs):
        raise AssertionError(f"a checkpoint was loaded: {args[1:2]}")

    register_all_modules()
    monkeypatch.setattr(checkpoint.CheckpointLoader, "load_checkpoint", no_download)
    MODELS.build(cfg.model).init_weights()  # random weights, nothing downloaded
    with pytest.raises(AssertionError, match="a checkpoint was loaded"):
        MODELS.build(original.model).init_weights()  # the control: the paper's config would


def test_pretrained_checkpoints_are_found_anywhere_in_a_config():
    tree = {"model": {"backbone": {"init_cfg": {"type": "Pretrained", "checkpoint": "a://b"}},
                      "neck": {"init_cfg": {"type": "Xavier"}},
                      "heads": [{"init_cfg": [{"type": "Pretrained", "checkpoint": "c"}]}],
                      "pretrained": "d.pth"}}
    assert gpu_check._pretrained_paths(tree) == [
        (("model", "backbone", "init_cfg"), "a://b"),
        (("model", "heads", 0, "init_cfg"), "c"),
        (("model", "pretrained"), "d.pth")]


def test_gpu_check_sh_refuses_a_machine_without_gpu(tmp_path):
    env = dict(os.environ, PATH="/usr/bin:/bin")  # no nvidia-smi
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2 and "no NVIDIA GPU visible" in done.stderr
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2 and "hides every GPU" in done.stderr


@pytest.mark.slow
def test_the_training_parts_run_small_configs_on_the_cpu(tmp_path):
    """The training parts' code (config without pretrained weights, bridge.train, the figures)
    with the CPU-sized configs for 2 iterations (about a minute)."""
    done, report = _run(["--device", "cpu", "--parts", ",".join(gpu_check.TRAININGS),
                         "--train-configs", "fcos_r18-tiny,faster-rcnn_r18-tiny", "--iters", "2"],
                        tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, config in zip(gpu_check.TRAININGS, ["fcos_r18-tiny", "faster-rcnn_r18-tiny"]):
        part = report["parts"][name]
        assert part["ok"] is True and part["config"] == config and part["device"] == "cpu"
        assert part["iters"] == 2 and part["steps_recorded"] == 2
        for key in ("step_seconds_median", "step_seconds_mean", "train_seconds",
                    "host_peak_rss_mib", "loss_first", "loss_last"):
            assert _number(part[key]) and part[key] > 0, (name, key)
        assert "gpu_peak_allocated_mib" not in part

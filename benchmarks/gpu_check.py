"""The GPU check: does everything the project runs work, and how fast, on this machine's GPU.

Parts, each in a process of its own (a part that fails, crashes or runs out of time reports its
error in the JSON; the others still run):

* ``devices`` — torch, jax and mmcv: versions, the devices each sees, mmcv's compiled CUDA
  version; with ``--device cuda`` the check stops here (exit status 2) unless torch and jax both
  use the GPU and mmcv has its CUDA kernels.
* ``filter_throughput`` — ``python -m benchmarks.filter_throughput --json`` on the device: random
  16-node ``cls_binary`` candidates through ``jaxloss.check`` (screen + full grid), next to PyTorch
  eager, per-candidate ``jax.jit`` and NumPy. Target on a GPU: at least 1,000,000 candidate checks
  per second (``candidates_per_s`` of the ``jaxloss`` engine). Reported apart: the raw engine
  (full grid) against PyTorch eager on the same candidates (``raw_speedup_vs_torch_eager``; on a
  GPU not equal terms, PyTorch eager runs on the CPU's cores: ``cores``) and the screen's own
  effect (``screen_speedup``); ``speedup_vs_torch_eager`` (the two mixed) is kept for one release.
* ``to_torch`` — ``bridge.to_torch`` on the device against JAX on the device for library losses:
  the largest absolute difference of the per-sample values and of their gradients (float32; every
  input's gradient), with the tolerance of tests/bridge/test_module.py's CUDA test
  (|torch − JAX| ≤ 1e-4·|JAX| + 1e-6 × the loss's largest |value| or |gradient|).
* ``train_fcos_r50`` / ``train_faster_rcnn_r50`` — ``--iters`` (20) iterations of the paper's FCOS
  R50-FPN (CSE-Autoloss-B) and Faster R-CNN R50-FPN (CSE-Autoloss-A) configs
  (``bridge/configs/paper``) on the embedded data set, through ``bridge.train.train``: seconds per
  step, peak GPU memory (torch's allocator), peak host memory. The backbones start from random
  weights: the configs' ImageNet checkpoints (``init_cfg`` of type Pretrained) are removed, since
  the check must run without internet; the figures are speed and memory, not accuracy. Not run with
  ``--quick`` (an R50 on the CPU takes minutes per step).
* ``search`` — two generations of the JAX stages (``python -m jaxloss.search --no-detector``,
  population 2,000, ``cls_binary``, no final measurement) on the device: wall seconds (compilation
  included), seconds per generation, the engine's backend.

Usage::

    python -m benchmarks.gpu_check [--device cuda|cpu] [--quick] [--json] [--parts a,b]
                                   [--iters 20] [--budget 450] [--work-dir DIR]

``--device cpu`` keeps everything on the CPU (CUDA_VISIBLE_DEVICES= and JAX on its CPU backend);
``--quick`` shrinks every workload to seconds and leaves the trainings out (the CPU test of this
script). scripts/gpu_check.sh runs it on the GPU after scripts/setup.sh. Exit status: 0 every part
ran and passed its check; 1 a part failed (see its ``error``); 2 ``--device cuda`` without a usable
CUDA device.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PARTS = ("devices", "filter_throughput", "to_torch", "train_fcos_r50", "train_faster_rcnn_r50",
         "search")
TRAININGS = {
    "train_fcos_r50": "fcos_r50-caffe_fpn_gn-head_cse-autoloss-b_1x_coco",
    "train_faster_rcnn_r50": "faster-rcnn_r50_fpn_cse-autoloss-a_1x_coco",
}
TARGET_CANDIDATES_PER_S = 1_000_000
TIMEOUT_S = {"devices": 120, "filter_throughput": 240, "to_torch": 180, "train_fcos_r50": 240,
             "train_faster_rcnn_r50": 240, "search": 300}
"""Longest each part may run, seconds (also bounded by what is left of --budget)."""
MIN_PART_S = 20
"""A part is not started with less time than this left in the budget."""
TO_TORCH_LOSSES = ("CE", "CSE-Autoloss-A_cls", "BCE", "FL", "CSE-Autoloss-B_cls", "GIoU",
                   "CSE-Autoloss-A_reg", "CSE-Autoloss-B_reg")
RTOL, ATOL_SCALE = 1e-4, 1e-6


class CheckFailed(Exception):
    """A part ran but its check failed (message says what)."""


# ------------------------------------------------------------------------------------------------
# the parts (each runs in its own process: python -m benchmarks.gpu_check --part NAME)
# ------------------------------------------------------------------------------------------------

def _jax_backend(device: str) -> str:
    import jax

    backend = jax.default_backend()
    if device == "cuda" and backend != "gpu":
        raise CheckFailed(f"jax runs on '{backend}', not the GPU: its CUDA plugin is missing or "
                          "did not load (scripts/setup.sh installs jax[cuda13] on a GPU machine)")
    return backend


def part_devices(device: str, quick: bool, iters: int, work: Path) -> dict:
    import jax
    import torch

    out = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "jax": jax.__version__,
           "jax_backend": jax.default_backend(),
           "jax_devices": [d.device_kind for d in jax.devices()]}
    if torch.cuda.is_available():
        out["gpus"] = [f"{torch.cuda.get_device_name(i)} "
                       f"({'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
                       for i in range(torch.cuda.device_count())]
    try:
        from mmcv.ops import get_compiling_cuda_version

        out["mmcv_ops_cuda"] = get_compiling_cuda_version()
    except ImportError as error:
        out["mmcv_ops_cuda"] = f"mmcv.ops does not import: {error}"
    if device == "cuda":
        try:
            if not torch.cuda.is_available():
                raise CheckFailed(f"torch {torch.__version__} sees no CUDA device "
                                  "(torch.cuda.is_available() is False)")
            _jax_backend(device)
            if out["mmcv_ops_cuda"] == "not available" or "import" in out["mmcv_ops_cuda"]:
                raise CheckFailed(f"mmcv's ops have no CUDA kernels ({out['mmcv_ops_cuda']}): "
                                  "run scripts/setup.sh on this GPU machine")
        except CheckFailed as error:  # the figures go with the error
            raise CheckFailed(json.dumps(dict(out, error=str(error)))) from None
    return out


def part_filter_throughput(device: str, quick: bool, iters: int, work: Path) -> dict:
    # the benchmark's own command line, in a process of its own (it sets JAX's CPU devices first)
    if quick:
        sizes = ["--candidates", "300", "--torch-candidates", "300", "--jit-candidates", "2",
                 "--numpy-candidates", "10"]
    else:
        # 200,000 candidates: a tenth of a second at the target, well above launch overheads;
        # sampling them takes longer than checking them (host-side, tens of seconds)
        sizes = ["--candidates", "200000", "--torch-candidates", "1000", "--jit-candidates", "20",
                 "--numpy-candidates", "200"]
    cmd = [sys.executable, "-m", "benchmarks.filter_throughput", "--json", "--funnel", "0", *sizes]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd[1:])} exited with {done.returncode}: "
                          f"{_tail(done.stderr or done.stdout)}")
    result = json.loads(done.stdout)
    engines = result["engines"]
    backend = result["machine"]["jax_backend"]
    if device == "cuda" and backend != "gpu":
        raise CheckFailed(f"the benchmark's jax ran on '{backend}', not the GPU")
    ours = engines["jaxloss"]
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "jax_backend": backend,
        "jax_devices": result["machine"]["jax_devices"],
        "candidates": ours["candidates"],
        "candidates_per_s": ours["candidates_per_s"],
        "candidates_per_s_full_grid": engines["jaxloss_full_grid"]["candidates_per_s"],
        "compile_seconds": ours["compile_seconds"],
        "target_candidates_per_s": TARGET_CANDIDATES_PER_S,
        "meets_target": ours["candidates_per_s"] >= TARGET_CANDIDATES_PER_S,
        "torch_eager_candidates_per_s": engines["torch_eager"]["candidates_per_s"],
        "raw_speedup_vs_torch_eager": result["raw_speedup_vs_torch_eager"],
        "raw_baseline": result["raw_baseline"],
        "screen_speedup": result["screen_speedup"],
        "cores": result["cores"],
        "same_work": result["same_work"],
        "speedup_vs_torch_eager": result["speedup_vs_torch_eager"],  # kept for one release
        "useful_node_evals_per_s": result["useful_node_evals_per_s"],
        "raw_elementwise_per_s": result["raw_elementwise_per_s"],
        "engines": engines,
    }


def _inputs(branch: str, n: int, seed: int) -> dict:
    """Detection-like float32 inputs of a branch (as tests/conftest.make_inputs): logits, one-hot
    or binary labels, IoU weights [N]; or intersection, union, enclosing areas [N] of box pairs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if branch == "cls":
        k = 5
        return dict(x=(rng.normal(size=(n, k)) * 3).astype(np.float32),
                    y=np.eye(k, dtype=np.float32)[rng.integers(0, k, n)],
                    w=rng.uniform(0, 1, n).astype(np.float32))
    if branch == "cls_binary":
        return dict(x=(rng.normal(size=n) * 3).astype(np.float32),
                    y=rng.integers(0, 2, n).astype(np.float32),
                    w=rng.uniform(0, 1, n).astype(np.float32))
    xy = rng.uniform(0, 300, (n, 2))
    a = np.concatenate([xy, xy + rng.uniform(4, 400, (n, 2))], 1)
    b = a + rng.normal(0, 40, (n, 4))
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    area = lambda t: (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])  # noqa: E731
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    i = iw * ih
    u = area(a) + area(b) - i
    e = ((np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0]))
         * (np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1])))
    return {k: v.astype(np.float32) for k, v in dict(i=i, u=u, e=e).items()}


def _jax_loss(loss):
    """The per-sample values [N] of ``loss`` as a plain JAX function of its inputs, for jax.grad."""
    from jaxloss.engine.reference import jax_function

    return jax_function(loss)


def part_to_torch(device: str, quick: bool, iters: int, work: Path) -> dict:
    import jax
    import numpy as np
    import torch

    import bridge
    import jaxloss

    backend = _jax_backend(device)
    torch_device = torch.device("cuda" if device == "cuda" else "cpu")
    n = 64 if quick else 4096
    rows, worst = {}, []
    for k, name in enumerate(TO_TORCH_LOSSES):
        loss = jaxloss.LIBRARY[name]
        data = _inputs(loss.branch, n, seed=k)
        engine_values = np.asarray(jaxloss.evaluate(loss, **data)[0])
        f = _jax_loss(loss)
        jax_inputs = {key: jax.numpy.asarray(v) for key, v in data.items()}
        jax_values = np.asarray(jax.jit(f)(jax_inputs))
        jax_grads = {key: np.asarray(v) for key, v in
                     jax.jit(jax.grad(lambda d: f(d).sum()))(jax_inputs).items()}
        module = bridge.to_torch(name)
        tensors = {key: torch.tensor(v, device=torch_device, requires_grad=True)
                   for key, v in data.items()}
        values = module(**tensors)
        values.sum().backward()
        if values.device.type != torch_device.type:
            raise CheckFailed(f"to_torch({name!r}) returned values on {values.device}")
        torch_values = values.detach().cpu().numpy()
        value_gap = float(np.max(np.abs(torch_values - engine_values)))
        value_rel = float(np.max(np.abs(torch_values - engine_values)
                                 / (np.abs(engine_values) + 1e-30)))
        value_ok = bool(np.all(np.abs(torch_values - engine_values)
                               <= RTOL * np.abs(engine_values)
                               + ATOL_SCALE * np.max(np.abs(engine_values))))
        grad_gap, grad_ok = 0.0, True
        for key, reference in jax_grads.items():
            grad = tensors[key].grad  # None: the formula does not read this input (CE: no w)
            got = np.zeros_like(reference) if grad is None else grad.cpu().numpy()
            gap = np.abs(got - reference)
            grad_gap = max(grad_gap, float(np.max(gap)))
            grad_ok &= bool(np.all(gap <= RTOL * np.abs(reference)
                                   + ATOL_SCALE * np.max(np.abs(reference))))
        rows[name] = {
            "branch": loss.branch, "samples": n,
            "values_max_abs_diff": value_gap, "values_max_rel_diff": value_rel,
            "grads_max_abs_diff": grad_gap,
            "engine_vs_jax_function_max_abs_diff": float(np.max(np.abs(jax_values
                                                                       - engine_values))),
            "within_tolerance": value_ok and grad_ok,
        }
        if not (value_ok and grad_ok):
            worst.append(name)
    out = {"torch_device": str(torch_device), "jax_backend": backend, "losses": rows,
           "values_max_abs_diff": max(r["values_max_abs_diff"] for r in rows.values()),
           "grads_max_abs_diff": max(r["grads_max_abs_diff"] for r in rows.values()),
           "tolerance": f"|torch - jax| <= {RTOL}*|jax| + {ATOL_SCALE}*max|jax| (per loss)"}
    if worst:
        out["error"] = f"outside the tolerance: {', '.join(worst)}"
        raise CheckFailed(json.dumps(out))
    return out


def _pretrained_paths(node, path=()):
    """(path, checkpoint) of every ``init_cfg`` of type Pretrained (and every ``pretrained``
    string) in a config tree; path: the keys from the tree's root, a list index as an int."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "init_cfg" and value is not None:
                cfgs = value if isinstance(value, (list, tuple)) else [value]
                for c in cfgs:
                    if isinstance(c, dict) and c.get("type") == "Pretrained":
                        found.append((path + (key,), c.get("checkpoint")))
            elif key == "pretrained" and isinstance(value, str):
                found.append((path + (key,), value))
            else:
                found += _pretrained_paths(value, path + (key,))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _pretrained_paths(value, path + (i,))
    return found


def config_without_pretrained(name: str, folder: Path) -> "tuple[Path, list[str]]":
    """A config file in ``folder`` inheriting bridge config ``name`` with every pretrained
    checkpoint removed (the backbone starts from random weights); returns it and what was removed
    ("model.backbone.init_cfg: open-mmlab://..."). Raises CheckFailed when one cannot be removed
    by a dict override (inside a list) or is still there after."""
    from bridge import config as configs

    base = configs.find(name).resolve()
    cfg = configs.load(base)
    removed, override = [], {}
    for path, checkpoint in _pretrained_paths(cfg.to_dict()):
        if any(isinstance(p, int) for p in path):
            raise CheckFailed(f"{name}: a pretrained checkpoint inside a list "
                              f"({'.'.join(map(str, path))}) cannot be overridden")
        node = override
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = None
        removed.append(f"{'.'.join(path)}: {checkpoint}")
    if cfg.get("load_from"):
        override["load_from"] = None
        removed.append(f"load_from: {cfg.load_from}")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{base.stem}_no-pretrained.py"
    lines = [f"# {base.name} without its pretrained checkpoints (no internet on the GPU check)",
             f"_base_ = {str(base)!r}"]
    lines += [f"{key} = {value!r}" for key, value in override.items()]
    out.write_text("\n".join(lines) + "\n")
    left = _pretrained_paths(configs.load(out).to_dict())
    if left or configs.load(out).get("load_from"):
        raise CheckFailed(f"{out} still loads pretrained weights: {left}")
    return out, removed


def _train(name: str, device: str, quick: bool, iters: int, work: Path) -> dict:
    import torch

    from bridge.train import train

    if device == "cuda" and not torch.cuda.is_available():
        raise CheckFailed("torch sees no CUDA device")
    config_name = TRAININGS[name]
    config, removed = config_without_pretrained(config_name, work / "configs")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train(config, iters=iters, work_dir=work / name, progress=False)
    wall = time.perf_counter() - start
    steps = [row["seconds"] for row in result["history"]]
    out = {
        "config": config_name,
        "pretrained": ("none: removed " + "; ".join(removed) + " (random initial weights; "
                       "the figures are speed and memory, not accuracy)") if removed else
                      "none in the config",
        "data": result["data"],
        "device": result["device"],
        "iters": iters, "steps_recorded": len(steps),
        "batch_size": result["batch_size"],
        "lr": result.get("lr"),  # after auto_scale_lr (the paper configs' lr is for 16 images)
        "step_seconds_median": result.get("step_seconds_median"),
        "step_seconds_mean": result.get("step_seconds_mean"),
        "step_seconds_first": steps[0] if steps else None,
        "train_seconds": result["train_seconds"],
        "wall_seconds": wall,
        "loss_first": result.get("loss_first"),
        "loss_last": result.get("loss_last"),
        "host_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        out["gpu_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        out["gpu"] = torch.cuda.get_device_name(0)
        if result["device"] != "cuda":
            raise CheckFailed(f"the training ran on {result['device']}, not the GPU")
    return out


def part_search(device: str, quick: bool, iters: int, work: Path) -> dict:
    population = 40 if quick else 2000
    folder = work / "search"
    shutil.rmtree(folder, ignore_errors=True)  # a new run, not a resume
    cmd = [sys.executable, "-m", "jaxloss.search", "--no-detector", "--branch", "cls_binary",
           "--population", str(population), "--generations", "2", "--final-k", "0",
           "--seed", "0", "--out", str(folder)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd[1:])} exited with {done.returncode}: "
                          f"{_tail(done.stderr or done.stdout)}")
    report = json.loads((folder / "report.json").read_text())
    log = done.stdout.splitlines()
    engine = next((l.split(":", 1)[1].split(";")[0].strip() for l in log
                   if l.startswith("engine:")), None)
    if device == "cuda" and engine is not None and not engine.startswith("gpu"):
        raise CheckFailed(f"the search's engine ran on {engine}, not the GPU")
    # each generation's log ends with its seconds in parentheses, "  (29.0 s)"
    per_generation = [float(l.strip()[1:-3]) for l in log
                      if l.startswith("  (") and l.rstrip().endswith(" s)")]
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "engine": engine,
        "population": population, "generations": 2,
        "wall_seconds": wall,
        "search_seconds": report.get("seconds"),
        "generation_seconds": per_generation or None,
        "best_fitness": report.get("fitness"),
        "best": report.get("best"),
        "funnel_totals": report.get("totals"),
    }


PART_FUNCTIONS = {
    "devices": part_devices,
    "filter_throughput": part_filter_throughput,
    "to_torch": part_to_torch,
    "train_fcos_r50": lambda d, q, i, w: _train("train_fcos_r50", d, q, i, w),
    "train_faster_rcnn_r50": lambda d, q, i, w: _train("train_faster_rcnn_r50", d, q, i, w),
    "search": part_search,
}


def run_part(name: str, device: str, quick: bool, iters: int, work: Path, result: Path) -> int:
    """Run one part here and write {"ok": ..., ...} to ``result`` (the parent reads it)."""
    start = time.perf_counter()
    try:
        out = {"ok": True, **PART_FUNCTIONS[name](device, quick, iters, work)}
    except CheckFailed as error:
        text = str(error)
        try:  # a part may fail with its figures (JSON) attached
            out = {"ok": False, **json.loads(text)}
        except ValueError:
            out = {"ok": False, "error": text}
    except Exception as error:  # noqa: BLE001 (every error of a part is reported, not raised)
        out = {"ok": False, "error": f"{type(error).__name__}: {error}",
               "traceback": _tail(traceback.format_exc(), 3000)}
    out["seconds"] = time.perf_counter() - start
    result.write_text(json.dumps(out, default=float))
    return 0 if out["ok"] else 1


# ------------------------------------------------------------------------------------------------
# the check (the parent process)
# ------------------------------------------------------------------------------------------------

def _tail(text: str, chars: int = 1500) -> str:
    text = (text or "").strip()
    return text if len(text) <= chars else "..." + text[-chars:]


def part_environment(device: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    # torch and JAX share the GPU in one process (to_torch): JAX must not take 75% of it up front
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    return env


def spawn_part(name: str, device: str, quick: bool, iters: int, work: Path,
               timeout: float) -> dict:
    """Run a part in a child process; its result, or what went wrong with the process."""
    result = work / f"{name}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--part", name, "--device", device,
           "--iters", str(iters), "--work-dir", str(work), "--result", str(result),
           "--train-configs", ",".join(TRAININGS.values())]
    if quick:
        cmd.append("--quick")
    start = time.perf_counter()
    # a session of its own: on a timeout the part's children (the benchmark, the search) go too,
    # instead of running on and slowing the next parts down
    child = subprocess.Popen(cmd, cwd=ROOT, env=part_environment(device), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stdout, stderr = child.communicate()
        (work / f"{name}.log").write_text((stdout or "") + (stderr or ""))
        return {"ok": False, "seconds": time.perf_counter() - start,
                "error": f"timed out after {timeout:.0f} s", "log_tail": _tail(stderr)}
    (work / f"{name}.log").write_text((stdout or "") + (stderr or ""))
    if result.is_file():
        out = json.loads(result.read_text())
        if not out.get("ok"):
            out.setdefault("log_tail", _tail(stderr))
        return out
    return {"ok": False, "seconds": time.perf_counter() - start,
            "error": f"the part's process ended with exit status {child.returncode} and no "
                     "result (a crash: see log_tail)", "log_tail": _tail(stderr or stdout)}


def check(device: str, quick: bool, parts: "list[str]", iters: int, budget: float,
          work: Path) -> "tuple[dict, int]":
    start = time.perf_counter()
    report = {"check": "gpu_check", "device": device, "quick": quick, "iters": iters,
              "budget_seconds": budget, "work_dir": str(work), "parts": {}}
    status = 0
    for name in parts:
        left = budget - (time.perf_counter() - start)
        if left < MIN_PART_S:
            report["parts"][name] = {"ok": False, "error": f"not run: {left:.0f} s left of the "
                                                           f"--budget of {budget:.0f} s"}
            status = 1
            continue
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        out = spawn_part(name, device, quick, iters, work, min(TIMEOUT_S[name], left))
        report["parts"][name] = out
        print(f"[gpu_check] {name}: {'ok' if out.get('ok') else 'FAILED: ' + str(out.get('error'))}"
              f" ({out.get('seconds', 0):.0f} s)", file=sys.stderr, flush=True)
        if not out.get("ok"):
            status = 1
            if name == "devices" and device == "cuda":
                report["error"] = ("no usable CUDA device: " + str(out.get("error"))
                                   + " (the other parts were not run)")
                status = 2
                break
    report["ok"] = status == 0
    report["seconds"] = time.perf_counter() - start
    return report, status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="tiny workloads, no trainings (a functional check, e.g. on a CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: "
                                                            "a summary)")
    parser.add_argument("--parts", default=None,
                        help=f"comma-separated subset of {','.join(PARTS)} (devices always runs)")
    parser.add_argument("--iters", type=int, default=20, help="training iterations (20)")
    parser.add_argument("--budget", type=float, default=450,
                        help="seconds for the whole check (450): a part is given at most what "
                             "is left")
    parser.add_argument("--work-dir", default=None, help="default: a new temporary folder")
    parser.add_argument("--train-configs", default=None, metavar="FCOS,FASTER",
                        help="other configs for the two trainings (e.g. the CPU-sized "
                             "fcos_r18-tiny,faster-rcnn_r18-tiny, to test this script on a CPU)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f"--iters must be at least 1, not {args.iters}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu_check-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.train_configs:
        names = [n.strip() for n in args.train_configs.split(",")]
        if len(names) != len(TRAININGS) or not all(names):
            parser.error(f"--train-configs takes {len(TRAININGS)} config names, comma-separated")
        TRAININGS.update(zip(TRAININGS, names))
    if args.part:
        return run_part(args.part, args.device, args.quick, args.iters, work, Path(args.result))

    parts = list(PARTS)
    if args.parts:
        wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in PARTS]
        if unknown:
            parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
        parts = ["devices"] + [p for p in PARTS if p in wanted and p != "devices"]
    if args.quick:
        skipped = [p for p in parts if p in TRAININGS]
        parts = [p for p in parts if p not in TRAININGS]
    else:
        skipped = []
    report, status = check(args.device, args.quick, parts, args.iters, args.budget, work)
    for p in skipped:
        report["parts"][p] = {"ok": None, "skipped": "--quick runs no training"}
    if status == 2:
        print(f"gpu_check: {report['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        _print(report)
    return status


def _print(report: dict) -> None:
    p = report["parts"]
    print(f"GPU check on {report['device']}: {'ok' if report['ok'] else 'FAILED'} in "
          f"{report['seconds']:.0f} s (work folder {report['work_dir']})")
    for name, out in p.items():
        if out.get("ok") is None:
            print(f"  {name}: skipped ({out.get('skipped')})")
        elif not out.get("ok"):
            print(f"  {name}: FAILED: {out.get('error')}")
        elif name == "devices":
            print(f"  devices: torch {out['torch']} (CUDA {out['torch_cuda']}) on "
                  f"{', '.join(out.get('gpus', [])) or 'CPU'}; jax {out['jax']} on "
                  f"{out['jax_backend']}; mmcv ops CUDA: {out['mmcv_ops_cuda']}")
        elif name == "filter_throughput":
            met = "met" if out["meets_target"] else "NOT met"
            c = out["cores"]
            terms = (f"{c['torch_eager']} cores each" if c["equal_terms"] else
                     f"jaxloss on {c['jaxloss_backend']}, PyTorch eager on {c['torch_eager']} "
                     "CPU cores")
            print(f"  filter: {out['candidates_per_s']:,.0f} candidates/s (target "
                  f"{out['target_candidates_per_s']:,}: {met}); raw engine (full grid) "
                  f"{out['raw_speedup_vs_torch_eager']:.0f}x PyTorch eager ({terms}); the "
                  f"screen, separately, {out['screen_speedup']:.1f}x")
        elif name == "to_torch":
            print(f"  to_torch on {out['torch_device']}: values within "
                  f"{out['values_max_abs_diff']:.2e}, gradients within "
                  f"{out['grads_max_abs_diff']:.2e} of JAX on {out['jax_backend']}")
        elif name in TRAININGS:
            mem = (f", peak GPU memory {out['gpu_peak_allocated_mib']:,.0f} MiB"
                   if "gpu_peak_allocated_mib" in out else "")
            print(f"  {name}: {out['iters']} iterations, {out['step_seconds_median']:.3f} s/step "
                  f"(median){mem}")
        elif name == "search":
            print(f"  search: 2 generations of {out['population']:,} on {out['engine']} in "
                  f"{out['wall_seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())

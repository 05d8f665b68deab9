"""Paper-scale trainings on CPU: the learning rate after auto_scale_lr, --print-config, the
--gpus-per-training setting, the rank launcher, GPU groups of local workers, and process trees
that end as a whole (no process of a killed training is left behind)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from bridge.executor import (CrashedError, ExecutorSetupError, LocalExecutor, Task, classify,
                             local_gpu_plan, ray_gpu_plan)

PAPER_FCOS = "fcos_r50-caffe_fpn_gn-head_cse-autoloss-b_1x_coco"


def gone(pid: int, within_s: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie nobody reaped yet) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def read_pid(path: Path, within_s: float = 30.0) -> int:
    deadline = time.monotonic() + within_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.05)
    return int(path.read_text())


# ----------------------------------------------------------------------------------------------
# the learning rate
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_fcos():
    from bridge.train import build_config

    return build_config(PAPER_FCOS)


@pytest.mark.parametrize("gpus, batch, lr", [
    (1, 2, 0.00125),   # one GPU, mmdet's 2 images: 2/16 of the lr
    (1, 16, 0.01),     # one GPU with all 16 images: the config's lr
    (4, 4, 0.01),      # the release's FCOS: 4 GPUs x 4 images = 16
    (8, 2, 0.01),      # the paper's 8 GPUs x 2 images = 16
    (8, 4, 0.02),      # 32 images: twice the lr
    (2, 3, 0.00375),   # 6 images
])
def test_the_lr_scales_with_gpus_times_images_per_gpu_as_mmengine_scales_it(paper_fcos, gpus,
                                                                            batch, lr):
    import torch
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    from bridge.train import lr_plan

    cfg = paper_fcos.copy()
    cfg.train_dataloader["batch_size"] = batch
    plan = lr_plan(cfg, gpus)
    assert plan.effective_batch == gpus * batch and plan.base_batch == 16 and plan.scale
    assert plan.scaled_lr == pytest.approx(lr)
    # MMEngine's own Runner.scale_lr, run on a stand-in runner with that world size and batch
    wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=plan.lr))
    runner = SimpleNamespace(_train_dataloader=dict(cfg.train_dataloader), world_size=gpus,
                             logger=logging.getLogger("test"), param_schedulers=None)
    Runner.scale_lr(runner, wrapper, cfg.auto_scale_lr)
    assert wrapper.optimizer.param_groups[0]["lr"] == pytest.approx(plan.scaled_lr)


def test_every_paper_config_scales_its_lr_from_16_images():
    from bridge import config as configs

    for path in sorted((configs.CONFIG_DIR / "paper").glob("*.py")):
        auto = configs.load(path).get("auto_scale_lr")
        assert auto == {"enable": True, "base_batch_size": 16}, (path.name, auto)


def test_a_config_without_auto_scale_lr_says_its_lr_is_not_scaled():
    from bridge.train import build_config, lr_plan

    plan = lr_plan(build_config("fcos_r18-tiny"), 2)
    assert not plan.scale and plan.scaled_lr == plan.lr == 0.002
    assert "auto_scale_lr is off in this config: not scaled for 4 images per step" in \
        plan.describe()


def test_the_runner_trains_with_the_scaled_lr(tmp_path):
    """A real Runner (one iteration of the tiny FCOS) with auto_scale_lr on: the lr it starts
    from is the plan's (the training's own LrCheckHook would stop it otherwise)."""
    from bridge.train import train

    config = tmp_path / "fcos_scaled.py"
    config.write_text(textwrap.dedent(f"""\
        _base_ = {str(Path(__file__).parents[2] / 'bridge/configs/small/fcos_r18-tiny.py')!r}
        auto_scale_lr = dict(enable=True, base_batch_size=1)
        """))
    result = train(config, iters=1, val="proxy:2", work_dir=tmp_path / "run", progress=False,
                   batch_size=3)
    assert result["gpus"] == 1 and result["effective_batch_size"] == 3
    assert result["lr"] == pytest.approx(0.002 * 3)


# ----------------------------------------------------------------------------------------------
# --print-config
# ----------------------------------------------------------------------------------------------

def test_print_config_shows_the_effective_batch_and_the_scaled_lr_without_training(tmp_path,
                                                                                  capsys):
    from bridge.train import main

    work = tmp_path / "run"
    code = main(["--config", PAPER_FCOS, "--print-config", "--gpus-per-training", "4",
                 "--batch-size", "4", "--work-dir", str(work)])
    out = capsys.readouterr().out
    assert code == 0
    assert "batch per GPU: 4" in out and "GPUs (processes): 4" in out
    assert "effective batch: 16 images per step" in out
    assert "learning rate: 0.01, the config's SGD lr (it is for 16 images per step" in out
    assert "IoUFCOSHead" in out and "CSE-Autoloss-B_cls" in out
    assert not work.exists()  # nothing trained, nothing written

    assert main(["--config", PAPER_FCOS, "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "effective batch: 2 images per step" in out
    assert "learning rate: 0.00125 = SGD lr 0.01 x 2/16" in out

    assert main(["--config", "fcos_r18-tiny", "--print-config", "full", "--iters", "7"]) == 0
    out = capsys.readouterr().out
    assert "schedule: 7 iterations" in out and "# the whole config" in out
    assert "max_iters=7" in out


def test_gpus_per_training_must_be_positive_in_bridge_train(capsys):
    from bridge.train import main

    assert main(["--config", "fcos_r18-tiny", "--gpus-per-training", "0", "--print-config"]) == 2
    assert "--gpus-per-training 0: a whole number >= 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# the search's setting
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -2, 1.5, "2", True])
def test_the_search_refuses_a_bad_gpus_per_training_saying_how_to_fix_it(value):
    from jaxloss.search.settings import Settings, SettingsError, validate

    with pytest.raises(SettingsError) as err:
        validate(Settings(gpus_per_training=value))
    text = str(err.value)
    assert text.startswith("--gpus-per-training: a whole number >= 1")
    assert "leave it out for one GPU per training" in text and repr(value) in text


def test_the_search_command_line_takes_gpus_per_training(capsys):
    from jaxloss.search.cli import build_parser, main, settings_from_args
    from jaxloss.search.settings import load_config

    args = build_parser().parse_args(["--gpus-per-training", "4", "--batch-size", "4"])
    assert settings_from_args(args).gpus_per_training == 4
    assert settings_from_args(build_parser().parse_args([])).gpus_per_training is None
    with pytest.raises(SystemExit) as stop:
        main(["--gpus-per-training", "0"])
    assert stop.value.code == 2
    assert "--gpus-per-training: a whole number >= 1" in capsys.readouterr().err
    root = Path(__file__).resolve().parents[2]
    batch = {}
    for path in sorted(root.glob("configs/search/paper-*.toml")):
        s = load_config(path)
        batch[path.stem] = s["gpus_per_training"] * s["batch_size"]
    assert batch == {"paper-faster-rcnn-cls": 16, "paper-faster-rcnn-reg": 16,
                     "paper-fcos-cls": 16}  # the paper's 16 images per step


def test_the_proxy_epoch_counts_the_images_of_all_gpus(tmp_path):
    from bridge.search_stages import DetectorSetup, ProxyStage, SearchData

    # COCO-sized, so that an epoch is far more steps than the proxy task's minimum
    data = SearchData("images", "verify.json", "train.json", "val.json", 160_000, "")

    def iters(**changes):
        d = DetectorSetup.from_search(dict(branch="cls_binary", seed=0, proxy_epochs=1,
                                           **changes))
        return ProxyStage(d, data, tmp_path, None, None, print).training()["iters"]

    assert iters(batch_size=2) == 80_000
    assert iters(batch_size=2, gpus_per_training=8) == 10_000  # 16 images per step


def test_a_multi_gpu_training_has_its_own_cache_key_and_gets_the_gpus(tmp_path):
    from bridge.search_stages import DetectorSetup, ProxyStage, SearchData

    data = SearchData("images", "verify.json", "train.json", "val.json", 100, "")
    stages = {n: ProxyStage(DetectorSetup.from_search(dict(branch="cls_binary", seed=0,
                                                           gpus_per_training=n)),
                            data, tmp_path, None, None, print) for n in (None, 1, 2)}
    keys = {n: s.task_key("loss", 0) for n, s in stages.items()}
    assert keys[None] == keys[1] != keys[2]  # a 1-GPU run keeps the keys it always had

    from bridge.executor import Outcome

    class Recorder:  # an executor that records the tasks it is given
        def map(self, tasks, on_done=None):
            self.tasks = list(tasks)
            return [Outcome(t.key, {"mAP": 0.1}) for t in tasks]

    for n, stage in stages.items():
        stage.executor = Recorder()
        stage._attempt(["loss"], {"loss": "formula"}, {"loss": keys[n]}, 0)
        kwargs = stage.executor.tasks[0].kwargs
        assert kwargs.get("gpus_per_training") == (2 if n == 2 else None), (n, kwargs)


def test_local_workers_get_gpu_groups_of_their_own():
    executor = LocalExecutor(workers=2, gpus=["0", "1", "2", "3", "4", "5", "6", "7"],
                             gpus_per_worker=4)
    assert [executor._env_for(k)["CUDA_VISIBLE_DEVICES"] for k in range(2)] == \
        ["0,1,2,3", "4,5,6,7"]
    assert "4 GPU(s) each (CUDA_VISIBLE_DEVICES 0,1,2,3 | 4,5,6,7)" in executor.describe()
    one = LocalExecutor(workers=3, gpus=[4, 5])  # one each; a third worker shares, as before
    assert [one._env_for(k)["CUDA_VISIBLE_DEVICES"] for k in range(3)] == ["4", "5", "4"]


def test_the_local_gpu_plan_refuses_gpus_that_are_not_there():
    assert local_gpu_plan(2, None, []) == ([], 1)  # CPU trainings where there is no GPU
    assert local_gpu_plan(3, None, ["0", "1"]) == (["0", "1"], 1)
    assert local_gpu_plan(2, 4, [str(i) for i in range(8)]) == ([str(i) for i in range(8)], 4)
    with pytest.raises(ExecutorSetupError, match="shows no GPU.*leave --gpus-per-training out"):
        local_gpu_plan(1, 2, [])
    with pytest.raises(ExecutorSetupError, match="need 16 GPUs.*lower --workers to 1"):
        local_gpu_plan(2, 8, [str(i) for i in range(8)])


def test_the_search_stops_before_any_data_when_the_gpus_are_not_there(monkeypatch):
    import bridge.executor
    from bridge.search_stages import DetectorSetup, make_executor
    from jaxloss.search.settings import SettingsError

    monkeypatch.setattr(bridge.executor, "visible_gpus", lambda: [])
    d = DetectorSetup.from_search(dict(branch="cls_binary", seed=0, gpus_per_training=2))
    with pytest.raises(SettingsError, match="--gpus-per-training: 2 GPU.*shows no GPU"):
        make_executor(d)


def test_the_ray_gpu_plan_comes_from_the_cluster_not_the_driver():
    def node(gpus, alive=True):
        return {"Alive": alive, "Resources": {"CPU": 8.0, "GPU": gpus}}

    head = {"Alive": True, "Resources": {"CPU": 4.0}}  # a head node without GPUs
    assert ray_gpu_plan(None, {"CPU": 4.0}, [head]) == 0
    assert ray_gpu_plan(None, {"CPU": 20.0, "GPU": 16.0}, [head, node(8), node(8)]) == 1
    assert ray_gpu_plan(8, {"CPU": 20.0, "GPU": 16.0}, [head, node(8), node(8)]) == 8
    with pytest.raises(ExecutorSetupError, match="declares no GPU.*--num-gpus"):
        ray_gpu_plan(1, {"CPU": 4.0}, [head])
    with pytest.raises(ExecutorSetupError, match="no node.*has that many.*lower "
                                                 "--gpus-per-training to 4"):
        ray_gpu_plan(8, {"GPU": 12.0}, [node(4), node(4), node(4), node(8, alive=False)])


# ----------------------------------------------------------------------------------------------
# the rank launcher
# ----------------------------------------------------------------------------------------------

def test_the_rank_commands_are_those_torchrun_would_run():
    from bridge.train import LAUNCHER_PID, rank_commands

    argv = ["--config", "x.py", "--batch-size", "2"]
    ranks = rank_commands(argv, 4, master_port=29511, launcher_pid=1234, threads=3,
                          python="/usr/bin/python3")
    assert len(ranks) == 4
    for k, (command, env) in enumerate(ranks):
        assert command == ["/usr/bin/python3", "-m", "bridge.train", "--config", "x.py",
                           "--batch-size", "2", "--launcher", "pytorch"]
        assert {key: env[key] for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                          "MASTER_ADDR", "MASTER_PORT", LAUNCHER_PID,
                                          "OMP_NUM_THREADS")} == \
            {"RANK": str(k), "LOCAL_RANK": str(k), "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511", LAUNCHER_PID: "1234",
             "OMP_NUM_THREADS": "3"}
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).parents[2])
        assert "CUDA_VISIBLE_DEVICES" not in env  # inherited: the worker's GPUs, rank k uses k
    with pytest.raises(ValueError, match="must not hold --launcher"):
        rank_commands(argv + ["--launcher", "pytorch"], 2, master_port=1, launcher_pid=1)


def test_the_rank_arguments_carry_the_whole_training(tmp_path):
    from bridge.train import build_parser, rank_argv

    argv = rank_argv("fcos_r18-tiny", "CSE-Autoloss-B_cls", None, data="coco:t.json",
                     images="img", val="coco:v.json", val_images="img", iters=5, batch_size=4,
                     work_dir=tmp_path, seed=3, progress=False, explode_factor=100.0,
                     out=tmp_path / "r.json", error_dir=tmp_path)
    args = build_parser().parse_args(argv + ["--launcher", "pytorch"])
    assert (args.loss_cls, args.loss_reg, args.data, args.val, args.iters, args.batch_size,
            args.seed, args.explode_factor, args.no_progress, args.launcher) == \
        ("CSE-Autoloss-B_cls", None, "coco:t.json", "coco:v.json", 5, 4, 3, 100.0, True,
         "pytorch")
    assert args.gpus_per_training == 1  # a rank is one process of the training


def test_a_rank_error_is_raised_again_as_the_same_kind(tmp_path):
    from bridge import finite
    from bridge.train import _rebuild_error, _write_error

    original = finite.NonFiniteLossError("x", "cls_binary", 7, "value", "2 NaN among 10 values")
    try:
        raise original
    except finite.NonFiniteLossError as err:
        _write_error(tmp_path, 1, err)
    info = json.loads((tmp_path / "rank1-error.json").read_text())
    again = _rebuild_error(info, 1, 2)
    assert type(again) is finite.NonFiniteLossError and again.step == 7
    assert str(again) == str(original) and classify(again) == "nonfinite"
    assert "raised by rank 1 of 2" in again.__notes__[0]
    unknown = _rebuild_error(dict(info, module="no.such.module"), 0, 2)
    assert type(unknown) is RuntimeError and "NonFiniteLossError: the cls_binary loss" in \
        str(unknown)
    assert classify(CrashedError("rank 1 of 2 ended with signal 9")) == "crashed"


FAKE_RANK = """
import json, os, signal, sys, time
rank = int(os.environ["RANK"])
open(os.path.join(os.environ["FAKE_DIR"], f"rank{rank}.pid"), "w").write(str(os.getpid()))
if rank == int(os.environ["FAKE_FAILING"]):
    time.sleep(0.5)
    if os.environ["FAKE_HOW"] == "error":
        json.dump({"module": "bridge.finite", "type": "ExplodingLossError",
                   "message": "the loss exploded at training step 4", "attrs": {"step": 4},
                   "traceback": "..."},
                  open(os.path.join(os.environ["FAKE_DIR"], f"rank{rank}-error.json"), "w"))
        sys.exit(1)
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)  # the others wait for it in a collective
"""


@pytest.mark.parametrize("how", ["error", "killed"])
def test_when_one_rank_fails_the_others_are_killed_and_its_error_raised(tmp_path, monkeypatch,
                                                                        how):
    import bridge.train
    from bridge import finite

    real = bridge.train.rank_commands

    def fake(argv, gpus, **kwargs):
        return [([sys.executable, "-c", FAKE_RANK], env) for _, env in real(argv, gpus, **kwargs)]

    monkeypatch.setattr(bridge.train, "rank_commands", fake)
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_FAILING", "2")
    monkeypatch.setenv("FAKE_HOW", how)
    start = time.monotonic()
    expected = finite.ExplodingLossError if how == "error" else CrashedError
    with pytest.raises(expected) as err:
        bridge.train.launch([], 3, work_dir=tmp_path, out=tmp_path / "r.json")
    assert time.monotonic() - start < 30  # not the 600 s the other ranks would wait
    if how == "error":
        assert err.value.step == 4 and classify(err.value) == "exploded"
        assert "raised by rank 2 of 3" in err.value.__notes__[0]
    else:
        assert "rank 2 of 3 ended with signal 9" in str(err.value)
        assert classify(err.value) == "crashed"
    for k in range(3):
        assert gone(int((tmp_path / f"rank{k}.pid").read_text()), 1.0)


# ----------------------------------------------------------------------------------------------
# process trees
# ----------------------------------------------------------------------------------------------

def test_a_timed_out_training_leaves_no_process_behind(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    task = Task("t", "tests.gpu_tasks:spawn_and_hang", {"pid_file": str(pid_file)},
                timeout_s=1.5)
    with LocalExecutor(workers=1) as executor:
        outcome, = executor.map([task])
    assert outcome.reason == "timeout"
    assert gone(read_pid(pid_file))


def test_a_worker_killed_by_someone_else_takes_its_tree_along(tmp_path):
    """The worker itself SIGKILLed (the OS, or Ray's force cancel, which kills a task's direct
    children only): what the task started goes too (the executor kills the worker's group when
    it sees the worker dead; where no executor is left, the worker's guardian does: see
    test_bridge_ray's force cancel)."""
    pid_file = tmp_path / "grandchild.pid"
    task = Task("t", "tests.gpu_tasks:spawn_and_hang", {"pid_file": str(pid_file)},
                timeout_s=60)
    executor = LocalExecutor(workers=1)
    seen = {}

    def kill_worker_once_started():
        grandchild = read_pid(pid_file)
        seen["grandchild"] = grandchild
        os.kill(psutil.Process(grandchild).ppid(), signal.SIGKILL)  # the worker, not its group

    import threading

    killer = threading.Thread(target=kill_worker_once_started)
    killer.start()
    try:
        outcome, = executor.map([task])
    finally:
        killer.join()
        executor.close()
    assert outcome.reason == "crashed"
    assert gone(seen["grandchild"])


@pytest.mark.slow  # two processes importing torch and MMDetection: about 20 s on 2 busy cores
def test_a_training_on_two_cpu_ranks_is_one_training_with_twice_the_batch(tmp_path, capsys):
    from bridge.train import main

    out = tmp_path / "metrics.json"
    code = main(["--config", "fcos_r18-tiny", "--iters", "3", "--gpus-per-training", "2",
                 "--val", "proxy:2", "--work-dir", str(tmp_path / "run"), "--out", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["gpus"] == 2 and result["batch_size"] == 2
    assert result["effective_batch_size"] == 4 and result["lr"] == pytest.approx(0.002)
    # rank 0's record of the 3 steps; validation ran (an untrained model may detect nothing in 2
    # images, and then COCO has no metrics to give)
    assert len(result["history"]) == 3 and isinstance(result["metrics"], dict)
    assert not list((tmp_path / "run").glob("rank*-error.json"))

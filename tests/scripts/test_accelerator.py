"""scripts/accelerator.py: the plan scripts/setup.sh follows on CPU and GPU machines, decided from
faked machines (nvidia-smi's answers, CUDA toolkits, environment variables), and the completion
stamp that tells a venv built for another kind of machine."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("accelerator", ROOT / "scripts" / "accelerator.py")
acc = importlib.util.module_from_spec(_spec)
sys.modules["accelerator"] = acc  # dataclasses look their module up
_spec.loader.exec_module(acc)

PINS = acc.read_pins(ROOT / "requirements" / "constraints.txt")
QUERY = ("nvidia-smi", "--query-gpu=index,name,compute_cap,driver_version", "--format=csv,noheader")
COMPLETE = tuple(f"include/{h}" for h in acc.TORCH_CUDA_HEADERS)


class FakeSystem(acc.System):
    """A machine: the commands it answers (others are not installed), its files, nvcc on PATH."""

    def __init__(self, commands=None, files=(), which=None, cpus=16, mem=128 << 30):
        self.commands = {tuple(k): v for k, v in (commands or {}).items()}
        self.files = set(files)
        self._which = which or {}
        self.cpus, self.mem = cpus, mem

    def run(self, cmd):
        cmd = tuple(cmd)
        if cmd in self.commands:
            return self.commands[cmd]
        if not any(k[0] == cmd[0] for k in self.commands):
            return None
        return 1, f"{cmd[0]}: unexpected arguments {cmd[1:]}"

    def which(self, name):
        return self._which.get(name)

    def exists(self, path):
        return path in self.files

    def realpath(self, path):
        return path.replace("/usr/bin/nvcc", "/usr/local/cuda-12.4/bin/nvcc")

    def cpu_count(self):
        return self.cpus

    def mem_available(self):
        return self.mem


def machine(gpus=(), driver="580.65.06", driver_cuda="13.0", toolkits=None, which=None,
            smi=True, query=None, cpus=16, mem=128 << 30):
    """A FakeSystem with GPUs [(name, compute capability)], a driver, and CUDA toolkits
    {home: (nvcc version, complete)}."""
    commands, files = {}, set()
    if smi:
        if query is None:
            if gpus:
                query = (0, "".join(f"{i}, {name}, {cap}, {driver}\n"
                                    for i, (name, cap) in enumerate(gpus)))
            else:
                query = (6, "No devices were found\n")
        commands[QUERY] = query
        banner = (f"| NVIDIA-SMI {driver}    Driver Version: {driver}    "
                  + (f"CUDA Version: {driver_cuda}     |" if driver_cuda else "|"))
        commands[("nvidia-smi",)] = (0, banner)
    for home, (version, complete) in (toolkits or {}).items():
        files.add(f"{home}/bin/nvcc")
        commands[(f"{home}/bin/nvcc", "--version")] = (
            0, f"nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release {version}, "
               f"V{version}.88\n")
        if complete:
            files.update(f"{home}/{h}" for h in COMPLETE)
        else:
            files.add(f"{home}/include/cuda_runtime.h")
    return FakeSystem(commands, files, which, cpus, mem)


def plan_for(system, **env):
    return acc.make_plan(acc.probe(env, system), PINS, python_tag="cp311")


H200 = ("NVIDIA H200", "9.0")
A100 = ("NVIDIA A100-SXM4-80GB", "8.0")


# ------------------------------------------------------------------------------------------------
# CPU machines
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("system, why", [
    (machine(smi=False), "nvidia-smi not found"),
    (machine(gpus=()), "lists no GPU"),  # a driver, no GPU given to this container
    (machine(smi=False, toolkits={"/usr/local/cuda": ("13.0", True)}), "nvidia-smi not found"),
])
def test_a_machine_without_gpu_gets_the_cpu_build(system, why):
    plan = plan_for(system)
    assert plan.kind == "cpu" and why in plan.reason
    assert plan.force_cuda == "0" and plan.jax_spec is None and plan.cuda is None
    assert plan.torch_index is None and plan.torch_specs == [] and not plan.cuda_packages
    assert plan.drop_constraints is None and plan.nvcc_source is None
    assert plan.stamp_line() == "accelerator=cpu"
    assert not plan.warnings


@pytest.mark.parametrize("hide", ["", "-1", "NoDevFiles"])
def test_gpus_hidden_by_cuda_visible_devices_give_the_cpu_build(hide):
    plan = plan_for(machine(gpus=[H200]), CUDA_VISIBLE_DEVICES=hide)
    assert plan.kind == "cpu" and "CUDA_VISIBLE_DEVICES" in plan.reason


# ------------------------------------------------------------------------------------------------
# GPU machines
# ------------------------------------------------------------------------------------------------

def test_one_h200_with_a_cuda13_driver_gets_pypi_torch_jax_cuda13_and_mmcv_for_9_0():
    plan = plan_for(machine(gpus=[H200]))
    assert plan.kind == "cuda" and plan.cuda == "13.0" and plan.arch_list == "9.0"
    assert plan.force_cuda == "1"
    assert plan.torch_index is None and plan.torch_specs == []  # the CPU machines' torch wheel
    assert plan.drop_constraints is None
    assert plan.jax_spec == f"jax[cuda13]=={PINS['jax']}"
    assert plan.cuda_packages[0] == "nvidia-cuda-nvcc==13.0.*"
    assert all(p.endswith("==13.0.*") and "-cu1" not in p for p in plan.cuda_packages)
    assert plan.gpus == ["NVIDIA H200 (9.0)"] and plan.driver == "580.65.06 (CUDA 13.0)"
    assert plan.stamp_line() == "accelerator=cuda cuda=13.0 arch=9.0"
    assert plan.mmcv_key == f"cp311-torch{PINS['torch']}-cuda13.0-sm9.0"
    assert not plan.warnings
    assert "cuda 13.0" in plan.summary() and "jax[cuda13]" in plan.summary()


@pytest.mark.parametrize("driver_cuda", ["13.0", "13.1", "13.2", "14.0"])
def test_drivers_of_cuda13_and_newer_take_the_pypi_torch(driver_cuda):
    plan = plan_for(machine(gpus=[H200], driver_cuda=driver_cuda))
    assert plan.cuda == "13.0" and plan.torch_index is None and not plan.warnings


CUDA12_KIT = {"/usr/local/cuda": ("12.4", True)}


@pytest.mark.parametrize("driver_cuda", ["12.0", "12.2", "12.4", "12.8", "12.9"])
def test_a_cuda12_driver_gets_torch_cu128_from_pytorchs_index_and_jax_cuda12(driver_cuda):
    plan = plan_for(machine(gpus=[H200], driver="550.54.15", driver_cuda=driver_cuda,
                            toolkits=CUDA12_KIT))
    assert plan.kind == "cuda" and plan.cuda == "12.8"
    assert plan.torch_index == "https://download.pytorch.org/whl/cu128"
    torch_version = PINS["torch"]
    assert plan.torch_specs == [f"torch=={torch_version}+cu128",
                                f"torchvision=={PINS['torchvision']}+cu128"]
    assert plan.jax_spec == f"jax[cuda12]=={PINS['jax']}"
    assert plan.cuda_packages == ["nvidia-cuda-nvcc-cu12==12.8.*"]  # ptxas for jax
    assert plan.nvcc_source == "system" and plan.cuda_home == "/usr/local/cuda"
    assert plan.stamp_line() == "accelerator=cuda cuda=12.8 arch=9.0"
    assert any("older than the CUDA 13.0" in w for w in plan.warnings)
    # the CUDA 13 libraries pinned for PyPI's torch are left out of the constraints; the rest stays
    constraints = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    dropped = {l.split("==")[0] for l in constraints if re.search(plan.drop_constraints, l)}
    assert {"cuda-toolkit", "nvidia-cublas", "nvidia-cudnn-cu13", "nvidia-nccl-cu13"} <= dropped
    assert not dropped & {"torch", "torchvision", "triton", "jax", "jaxlib", "numpy", "mmdet"}


@pytest.mark.parametrize("driver_cuda", ["11.8", "11.4", "10.2"])
def test_a_driver_older_than_cuda12_is_refused_with_what_to_do(driver_cuda):
    with pytest.raises(acc.PlanError, match="Update the driver.*JAXLOSS_ACCELERATOR=cpu"):
        plan_for(machine(gpus=[H200], driver="470.82", driver_cuda=driver_cuda))


def test_a_driver_whose_cuda_version_is_unreadable_is_assumed_recent_with_a_warning():
    plan = plan_for(machine(gpus=[H200], driver_cuda=None))
    assert plan.kind == "cuda" and plan.cuda == "13.0"
    assert any("does not say which CUDA version" in w for w in plan.warnings)


def test_two_gpus_of_different_generations_get_kernels_for_both():
    plan = plan_for(machine(gpus=[H200, A100]))
    assert plan.arch_list == "8.0;9.0"
    assert plan.gpus == ["NVIDIA H200 (9.0)", "NVIDIA A100-SXM4-80GB (8.0)"]
    assert plan.stamp_line() == "accelerator=cuda cuda=13.0 arch=8.0;9.0"
    assert plan.mmcv_key.endswith("-sm8.0_9.0")


CAPS = ["7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "12.0"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(CAPS), min_size=1, max_size=8))
def test_the_arch_list_is_every_distinct_compute_capability_in_numeric_order(caps):
    plan = plan_for(machine(gpus=[(f"GPU{i}", c) for i, c in enumerate(caps)]))
    listed = plan.arch_list.split(";")
    assert set(listed) == set(caps) and len(listed) == len(set(caps))
    assert [tuple(map(int, c.split("."))) for c in listed] == sorted(
        tuple(map(int, c.split("."))) for c in set(caps))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(CAPS), min_size=2, max_size=6), st.data())
def test_cuda_visible_devices_chooses_whose_kernels_are_built(caps, data):
    chosen = data.draw(st.lists(st.integers(0, len(caps) - 1), min_size=1, unique=True))
    gpus = [(f"GPU{i}", c) for i, c in enumerate(caps)]
    plan = plan_for(machine(gpus=gpus), CUDA_VISIBLE_DEVICES=",".join(map(str, chosen)))
    assert set(plan.arch_list.split(";")) == {caps[i] for i in chosen}
    assert len(plan.gpus) == len(chosen)


def test_gpus_named_by_uuid_in_cuda_visible_devices_keep_every_gpus_kernels():
    plan = plan_for(machine(gpus=[H200, A100]), CUDA_VISIBLE_DEVICES="GPU-5a1c2e3d-0000")
    assert plan.arch_list == "8.0;9.0"


def test_torch_cuda_arch_list_set_by_the_user_is_kept():
    plan = plan_for(machine(gpus=[H200]), TORCH_CUDA_ARCH_LIST="8.0 9.0+PTX")
    assert plan.arch_list == "8.0 9.0+PTX"
    assert plan.stamp_line() == "accelerator=cuda cuda=13.0 arch=8.0 9.0+PTX"


@pytest.mark.parametrize("cap, driver_cuda, ok", [
    ("7.0", "13.0", False),  # V100: CUDA 13 no longer compiles for Volta
    ("6.0", "13.0", False),
    ("7.5", "13.0", True),
    ("7.0", "12.4", True),  # CUDA 12 still does
])
def test_gpus_too_old_for_the_cuda_version_are_named(cap, driver_cuda, ok):
    system = machine(gpus=[H200, ("Tesla V100-SXM2-32GB", cap)], driver_cuda=driver_cuda,
                     toolkits=CUDA12_KIT)
    if ok:
        assert cap in plan_for(system).arch_list.split(";")
    else:
        with pytest.raises(acc.PlanError, match=r"GPU 1 \(Tesla V100-SXM2-32GB\).*" + cap):
            plan_for(system)


def test_gpu_names_with_commas_are_read():
    gpus = acc.parse_gpu_query("0, NVIDIA H100, 80GB HBM3, 9.0, 580.65.06\n"
                               "1, NVIDIA A100, 8.0, 580.65.06\n")
    assert [(g.index, g.name, g.compute_cap) for g in gpus] == [
        (0, "NVIDIA H100, 80GB HBM3", "9.0"), (1, "NVIDIA A100", "8.0")]


# ------------------------------------------------------------------------------------------------
# nvcc: the machine's, or NVIDIA's pip packages
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("toolkits, env, which, driver_cuda, source, home, why", [
    # no toolkit at all
    ({}, {}, None, "13.0", "pip", None, "has no CUDA toolkit"),
    # a complete toolkit of torch's CUDA major version, found in the usual place
    ({"/usr/local/cuda": ("13.0", True)}, {}, None, "13.0", "system", "/usr/local/cuda", "13.0"),
    # a newer minor version of the same major version is fine (torch only warns)
    ({"/usr/local/cuda": ("13.1", True)}, {}, None, "13.1", "system", "/usr/local/cuda", "13.1"),
    # CUDA_HOME (e.g. from `module load cuda`) of another major version: pip's, saying why
    ({"/opt/cuda-12.4": ("12.4", True)}, {"CUDA_HOME": "/opt/cuda-12.4"}, None, "13.0", "pip",
     None, "CUDA 12, torch's is 13"),
    # nvcc without the math libraries' headers (a minimal image): pip's, naming the headers
    ({"/usr/local/cuda": ("13.0", False)}, {}, None, "13.0", "pip", None, "cusparse.h"),
    # CUDA_HOME wins over /usr/local/cuda when both fit
    ({"/opt/cuda-13.0": ("13.0", True), "/usr/local/cuda": ("13.0", True)},
     {"CUDA_HOME": "/opt/cuda-13.0"}, None, "13.0", "system", "/opt/cuda-13.0", "CUDA_HOME"),
    # a CUDA_HOME that does not fit is passed over for one that does
    ({"/opt/cuda-12.4": ("12.4", True), "/usr/local/cuda": ("13.0", True)},
     {"CUDA_HOME": "/opt/cuda-12.4"}, None, "13.0", "system", "/usr/local/cuda", "13.0"),
    # nvcc on PATH (a link into a toolkit)
    ({"/usr/local/cuda-12.4": ("12.4", True)}, {}, {"nvcc": "/usr/bin/nvcc"}, "12.4", "system",
     "/usr/local/cuda-12.4", "nvcc on PATH"),
    # CUDA 12 driver: a CUDA 12 toolkit fits torch's CUDA 12.8 build
    ({"/usr/local/cuda": ("12.4", True)}, {}, None, "12.4", "system", "/usr/local/cuda", "12.4"),
])
def test_nvcc_is_the_machines_when_it_fits_torch_else_nvidias_pip_package(
        toolkits, env, which, driver_cuda, source, home, why):
    plan = plan_for(machine(gpus=[H200], toolkits=toolkits, which=which, driver_cuda=driver_cuda),
                    **env)
    assert plan.nvcc_source == source and plan.cuda_home == home
    assert why in plan.nvcc_reason


@pytest.mark.parametrize("toolkits, why", [
    ({}, "No CUDA toolkit found"),
    ({"/usr/local/cuda": ("13.0", True)}, "CUDA 13, torch's is 12"),
    ({"/usr/local/cuda": ("12.4", False)}, "cusparse.h"),
])
def test_a_cuda12_build_without_a_cuda12_toolkit_says_what_to_do(toolkits, why):
    """CUDA 12's pip package of nvcc holds ptxas only: mmcv needs the machine's nvcc."""
    with pytest.raises(acc.PlanError, match=f"CUDA 12 toolkit(.|\n)*{why}(.|\n)*module load cuda"
                                            "(.|\n)*580 or newer(.|\n)*JAXLOSS_ACCELERATOR=cpu"):
        plan_for(machine(gpus=[H200], driver_cuda="12.4", toolkits=toolkits))


@pytest.mark.parametrize("cpus, mem_gib, jobs", [
    (16, 128, 16), (16, 24, 8), (2, 24, 2), (64, 32, 10), (8, 1, 1), (1, None, 1), (12, None, 12)])
def test_parallel_nvcc_jobs_are_capped_by_memory(cpus, mem_gib, jobs):
    mem = None if mem_gib is None else mem_gib << 30
    assert acc.build_jobs(cpus, mem) == jobs
    assert plan_for(machine(gpus=[H200], cpus=cpus, mem=mem)).max_jobs == jobs


# ------------------------------------------------------------------------------------------------
# JAXLOSS_ACCELERATOR
# ------------------------------------------------------------------------------------------------

def test_forcing_cpu_on_a_gpu_machine_gives_the_cpu_build_and_says_to_hide_the_gpus():
    plan = plan_for(machine(gpus=[H200, A100]), JAXLOSS_ACCELERATOR="cpu")
    assert plan.kind == "cpu" and plan.reason == "JAXLOSS_ACCELERATOR=cpu"
    assert plan.stamp_line() == "accelerator=cpu" and plan.jax_spec is None
    assert any("CUDA_VISIBLE_DEVICES=" in w for w in plan.warnings)
    hidden = plan_for(machine(gpus=[H200]), JAXLOSS_ACCELERATOR="cpu", CUDA_VISIBLE_DEVICES="")
    assert hidden.kind == "cpu" and not hidden.warnings


@pytest.mark.parametrize("value", ["cuda", "CUDA", " cuda "])
def test_forcing_cuda_on_a_gpu_machine_is_the_auto_plan(value):
    plan = plan_for(machine(gpus=[H200]), JAXLOSS_ACCELERATOR=value)
    assert plan.kind == "cuda" and plan.stamp_line() == plan_for(machine(gpus=[H200])).stamp_line()


@pytest.mark.parametrize("system, env, why", [
    (machine(smi=False), {}, "nvidia-smi is not installed"),
    (machine(gpus=()), {}, "lists no GPU"),
    (machine(gpus=[H200]), {"CUDA_VISIBLE_DEVICES": ""}, "hides every GPU"),
])
def test_forcing_cuda_without_a_visible_gpu_fails_clearly(system, env, why):
    with pytest.raises(acc.PlanError, match=f"JAXLOSS_ACCELERATOR=cuda, but no NVIDIA GPU is "
                                            f"visible: .*{why}.*JAXLOSS_ACCELERATOR=cpu"):
        plan_for(system, JAXLOSS_ACCELERATOR="cuda", **env)


@pytest.mark.parametrize("value", ["gpu", "rocm", "yes"])
def test_an_unknown_accelerator_is_refused(value):
    with pytest.raises(acc.PlanError, match="not one of auto, cpu, cuda"):
        plan_for(machine(smi=False), JAXLOSS_ACCELERATOR=value)


BROKEN = (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.")
OLD_SMI = (2, 'Field "compute_cap" is not a valid field to query.')


@pytest.mark.parametrize("query, message", [(BROKEN, "couldn't communicate"),
                                            (OLD_SMI, "compute_cap")])
def test_a_failing_nvidia_smi_is_an_error_not_a_silent_cpu_build(query, message):
    system = machine(query=query)
    with pytest.raises(acc.PlanError, match=f"nvidia-smi failed: .*{message}(.|\n)*"
                                            "JAXLOSS_ACCELERATOR=cpu"):
        plan_for(system)
    with pytest.raises(acc.PlanError):
        plan_for(system, JAXLOSS_ACCELERATOR="cuda")
    assert plan_for(system, JAXLOSS_ACCELERATOR="cpu").kind == "cpu"


# ------------------------------------------------------------------------------------------------
# the completion stamp
# ------------------------------------------------------------------------------------------------

PLANS = {
    "cpu": lambda: plan_for(machine(smi=False)),
    "h200": lambda: plan_for(machine(gpus=[H200])),
    "h200+a100": lambda: plan_for(machine(gpus=[H200, A100])),
    "a100": lambda: plan_for(machine(gpus=[A100])),
    "h200-cuda12": lambda: plan_for(machine(gpus=[H200], driver_cuda="12.4",
                                            toolkits=CUDA12_KIT)),
    "forced-cpu-on-h200": lambda: plan_for(machine(gpus=[H200]), JAXLOSS_ACCELERATOR="cpu"),
}


@pytest.mark.parametrize("built", sorted(PLANS))
@pytest.mark.parametrize("here", sorted(PLANS))
def test_a_venv_moved_to_another_kind_of_machine_is_detected(built, here):
    stamp = acc.stamp_text("abc123", PLANS[built]())
    status, message = acc.stamp_status(stamp, "abc123", PLANS[here]())
    same = PLANS[built]().stamp_line() == PLANS[here]().stamp_line()
    assert status == ("ok" if same else "moved")
    if not same:
        old, new = PLANS[built]().stamp_line(), PLANS[here]().stamp_line()
        assert f"built for {old}, but this machine calls for {new}" in message
        assert "rebuilding" in message and "JAXLOSS_VENV" in message
        # a moved venv whose requirements changed too is still reported as moved
        assert acc.stamp_status(stamp, "def456", PLANS[here]())[0] == "moved"


def test_the_stamp_tells_missing_stale_and_old_format_stamps():
    plan = PLANS["h200"]()
    assert acc.stamp_text("h", plan) == "h\naccelerator=cuda cuda=13.0 arch=9.0\n"
    assert acc.stamp_status(None, "h", plan)[0] == "missing"
    assert acc.stamp_status(acc.stamp_text("old", plan), "h", plan)[0] == "stale"
    assert acc.stamp_status("h\n", "h", plan)[0] == "stale"  # the stamp before accelerators
    assert acc.stamp_status("", "h", plan)[0] == "stale"
    assert acc.stamp_status(acc.stamp_text("h", plan), "h", plan) == ("ok", "")


def test_setup_sh_writes_the_stamp_in_stamp_texts_format():
    """setup.sh writes the stamp with printf; its format must be stamp_text's."""
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert """printf '%s\\n%s\\n' "$hash" "$plan_stamp_line" >"$stamp\"""" in text
    plan = PLANS["h200+a100"]()
    written = subprocess.run(["bash", "-c", """printf '%s\\n%s\\n' "$1" "$2" """, "-", "h",
                              plan.stamp_line()], capture_output=True, text=True).stdout
    assert written == acc.stamp_text("h", plan)


# ------------------------------------------------------------------------------------------------
# what setup.sh reads
# ------------------------------------------------------------------------------------------------

def test_the_pins_say_which_cuda_the_pypi_torch_is_built_for():
    assert acc.torch_wheel_cuda(PINS) == (13, 0)
    assert acc.torch_wheel_cuda({"nvidia-cuda-runtime-cu12": "12.8.90"}) == (12, 8)
    with pytest.raises(acc.PlanError, match="cannot tell which CUDA"):
        acc.torch_wheel_cuda({"torch": "2.14.1"})
    base = acc.read_pins(ROOT / "requirements" / "base.txt")
    for name in ("torch", "torchvision", "jax"):
        assert PINS[name] == base[name]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_the_shell_form_of_the_plan_round_trips_through_bash(name):
    plan = PLANS[name]()
    status = acc.stamp_status(None, "h", plan)
    script = acc._shell(plan, status)
    out = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf "%s|" "$plan_kind" "$plan_cuda" "$plan_arch_list" '
                       '"$plan_stamp_line" "$plan_summary" "$plan_torch_specs" "$stamp_status" '
                       '"$plan_warnings"', "-", script],
        capture_output=True, text=True, check=True).stdout.split("|")
    assert out[:4] == [plan.kind, plan.cuda or "", plan.arch_list or "", plan.stamp_line()]
    assert out[4] == plan.summary() and out[5] == " ".join(plan.torch_specs)
    assert out[6] == "missing" and out[7] == "\n".join(plan.warnings)


def _fake_nvidia_smi(folder: Path, caps: list[str], cuda: str) -> None:
    lines = "\\n".join(f"{i}, NVIDIA H200, {c}, 580.65.06" for i, c in enumerate(caps))
    script = folder / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "--query-gpu=index,name,compute_cap,driver_version" ]; then printf '{lines}\\n'; exit 0; fi
echo "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: {cuda}  |"
""")
    script.chmod(0o755)


@pytest.mark.parametrize("caps, cuda, kind", [([], None, "cpu"), (["9.0"], "13.0", "cuda"),
                                              (["9.0", "8.0"], "13.0", "cuda")])
def test_the_command_line_probes_the_real_programs(tmp_path, caps, cuda, kind):
    """The plan command as setup.sh runs it, with an nvidia-smi on PATH (a script) or none."""
    if caps:
        _fake_nvidia_smi(tmp_path, caps, cuda)
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAXLOSS_ACCELERATOR", "CUDA_VISIBLE_DEVICES", "TORCH_CUDA_ARCH_LIST")}
    env["PATH"] = f"{tmp_path}:/usr/bin:/bin"
    stamp = tmp_path / "stamp"
    stamp.write_text("h\naccelerator=cpu\n")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "accelerator.py"), "plan",
                           "--format", "json", "--constraints",
                           str(ROOT / "requirements" / "constraints.txt"), "--stamp", str(stamp),
                           "--hash", "h"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["kind"] == kind
    assert plan["stamp_status"] == ("ok" if kind == "cpu" else "moved")
    if kind == "cuda":
        assert plan["arch_list"] == ";".join(sorted(set(caps), key=float))
        assert plan["cuda"] == ("13.0" if cuda.startswith("13") else "12.8")
    env["JAXLOSS_ACCELERATOR"] = "cuda"
    if not caps:
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "accelerator.py"), "plan",
                               "--constraints", str(ROOT / "requirements" / "constraints.txt")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2 and "no NVIDIA GPU is visible" in done.stderr


# ------------------------------------------------------------------------------------------------
# CUDA_HOME from NVIDIA's pip packages
# ------------------------------------------------------------------------------------------------

def _touch(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("layout", ["cu13", "split"])
def test_make_cuda_home_joins_the_pip_packages_into_one_toolkit(tmp_path, layout):
    site = tmp_path / "site-packages"
    if layout == "cu13":  # every CUDA 13 package shares nvidia/cu13/
        pkgs = {"cu13": ["bin/nvcc", "bin/ptxas", "nvvm/bin/cicc", "include/crt/host_config.h",
                         "include/cccl/cub/cub.cuh", "include/cuda_runtime.h", "include/cusparse.h",
                         "lib/libcudart.so.13", "lib/libcublas.so.13"],
                "cudnn": ["include/cudnn.h", "lib/libcudnn.so.9"]}
    else:  # one folder per package (as CUDA 12's packages are laid out)
        pkgs = {"cuda_nvcc": ["bin/nvcc", "nvvm/bin/cicc", "include/crt/host_config.h"],
                "cuda_runtime": ["include/cuda_runtime.h", "lib/libcudart.so.12"],
                "cusparse": ["include/cusparse.h", "lib/libcusparse.so.12"],
                "cuda_cccl": ["include/cub/cub.cuh", "include/thrust/sort.h"]}
    for pkg, files in pkgs.items():
        for f in files:
            _touch(site / "nvidia" / pkg / f, f"{pkg}/{f}")
    dest = tmp_path / "venv" / "cuda"
    _touch(dest / "stale")  # replaced
    home = acc.make_cuda_home([site], dest)
    assert home == dest and not (dest / "stale").exists()
    assert (dest / "bin" / "nvcc").read_text().endswith("bin/nvcc")
    assert (dest / "nvvm" / "bin" / "cicc").is_file()
    for header in ("cuda_runtime.h", "cusparse.h", "crt/host_config.h"):
        assert (dest / "include" / header).is_file(), header
    cub = "cccl/cub/cub.cuh" if layout == "cu13" else "cub/cub.cuh"
    assert (dest / "include" / cub).is_file()
    cudart = dest / "lib64" / "libcudart.so"
    assert cudart.is_symlink() and cudart.resolve().name.startswith("libcudart.so.1")
    assert all(p.resolve().exists() for p in (dest / "lib64").iterdir())
    # made again from a relative path (as a shell might give it): the links are absolute
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        acc.make_cuda_home(["site-packages"], "venv/cuda")
    finally:
        os.chdir(cwd)
    assert all(os.path.isabs(os.readlink(p)) for p in (dest / "include").iterdir())
    assert cudart.resolve().exists()


def test_make_cuda_home_without_nvcc_or_cudart_says_what_to_do(tmp_path):
    _touch(tmp_path / "site" / "nvidia" / "cu13" / "include" / "cuda_runtime.h")
    with pytest.raises(acc.PlanError, match="no NVIDIA pip package with bin/nvcc.*--force"):
        acc.make_cuda_home([tmp_path / "site"], tmp_path / "cuda")
    _touch(tmp_path / "site" / "nvidia" / "cu13" / "bin" / "nvcc")
    with pytest.raises(acc.PlanError, match="no libcudart.*nvidia-cuda-runtime"):
        acc.make_cuda_home([tmp_path / "site"], tmp_path / "cuda")


# ------------------------------------------------------------------------------------------------
# slow: one mmcv CUDA op built as setup.sh builds mmcv's
# ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_one_mmcv_cuda_op_compiles_with_the_setups_toolchain(tmp_path):
    """mmcv 2.1.0's nms_cuda.cu (the installed package carries its sources), compiled and linked
    by torch's BuildExtension with mmcv's flags (-std=c++17, which scripts/nvcc-c++20 rewrites) and
    a CUDA_HOME from make_cuda_home: the venv's NVIDIA pip packages (headers, libcudart), with the
    venv's pip nvcc or else the machine's nvcc of torch's CUDA major version. About a minute; no
    GPU needed. Skipped without nvcc."""
    import sysconfig

    torch = pytest.importorskip("torch")
    mmcv = pytest.importorskip("mmcv")
    csrc = Path(mmcv.__file__).parent / "ops" / "csrc"
    if not (csrc / "pytorch" / "cuda" / "nms_cuda.cu").is_file():
        pytest.skip("the installed mmcv carries no CUDA sources")
    major = int(torch.version.cuda.split(".")[0])
    site = Path(sysconfig.get_paths()["purelib"])
    sites = [site]
    if not list((site / "nvidia").glob("*/bin/nvcc")):
        kits = [k for k in acc.find_toolkits(os.environ, acc.System())
                if k.version and k.version[0] == major]
        if not kits:
            pytest.skip(f"no nvcc of CUDA {major} (neither NVIDIA's pip package nor a toolkit)")
        (tmp_path / "system" / "nvidia").mkdir(parents=True)
        (tmp_path / "system" / "nvidia" / "toolkit").symlink_to(kits[0].home)
        sites.insert(0, tmp_path / "system")
    home = acc.make_cuda_home(sites, tmp_path / "cuda")
    (tmp_path / "binding.cpp").write_text(
        "#include <torch/extension.h>\n"
        "at::Tensor NMSCUDAKernelLauncher(at::Tensor boxes, at::Tensor scores, float iou, "
        "int offset);\n"
        "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def(\"nms\", &NMSCUDAKernelLauncher); }\n")
    (tmp_path / "setup.py").write_text(f"""
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension
csrc = {str(csrc)!r}
setup(name="nms_probe", ext_modules=[CUDAExtension(
    "nms_probe", ["binding.cpp", csrc + "/pytorch/cuda/nms_cuda.cu"],
    include_dirs=[csrc + "/pytorch", csrc + "/common", csrc + "/common/cuda"],
    define_macros=[("MMCV_WITH_CUDA", None)],
    extra_compile_args={{"cxx": ["-std=c++17"], "nvcc": ["-std=c++17"]}})],  # as mmcv's setup.py
    cmdclass={{"build_ext": BuildExtension}})
""")
    env = dict(os.environ, CUDA_HOME=str(home), REAL_NVCC=str(home / "bin" / "nvcc"),
               PATH=f"{Path(sys.executable).parent}:{home / 'bin'}:{os.environ['PATH']}",
               PYTORCH_NVCC=str(ROOT / "scripts" / "nvcc-c++20"),
               CXX=str(ROOT / "scripts" / "cxx-c++20"), CFLAGS="-DNDEBUG -O3 -fwrapv",
               TORCH_CUDA_ARCH_LIST="9.0", MAX_JOBS="1")
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "-std=c++17" in done.stdout  # mmcv's flag reached the wrapper ...
    assert "nvcc-c++20" in done.stdout  # ... which ninja called
    check = subprocess.run([sys.executable, "-c", "import torch, nms_probe; print(nms_probe.nms)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr

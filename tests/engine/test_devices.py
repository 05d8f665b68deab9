"""The engine spread over several CPU devices (jaxloss.devices) gives the same results, bit for
bit, as on one; and the device count is chosen with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.engine import batched
from jaxloss.engine.devices import shard_count, use_cpu_cores
from jaxloss.search.cli import main as cli_main
from tests.conftest import make_inputs

ROOT = Path(__file__).resolve().parents[2]

# What the engine serves: values with the class-wise operators (cls); the checks with their
# derivatives, screen and survivors; the simulation's training through per-candidate inputs.
# (The search itself on two devices against one: tests/search/test_search.py's SIGKILL-resume test, whose
# subprocesses use every core.)
WORKLOAD = """
import sys
import numpy as np
import jaxloss
devices = jaxloss.use_cpu_cores(int(sys.argv[1]))
from jaxloss.engine.devices import shard_count
assert shard_count() == devices, (shard_count(), devices)
from tests.engine.test_devices import workload
np.savez(sys.argv[2], **workload())
"""


def workload() -> dict:
    out = {}
    pop = jaxloss.sample("cls", 200, seed=3, max_nodes=16)
    out["cls/values"] = jaxloss.evaluate(pop, **make_inputs("cls", 64, seed=2))
    pop = jaxloss.sample("cls_binary", 200, seed=3, max_nodes=16)
    verdicts = jaxloss.check(pop)
    out["reasons"] = np.array([str(r) for r in verdicts.reasons])
    out["measures"] = np.stack([verdicts.measures[k] for k in sorted(verdicts.measures)])
    again = jaxloss.check(pop)  # in the buffers the first call left (split over the devices)
    out["measures_again"] = np.stack([again.measures[k] for k in sorted(again.measures)])
    out["score"] = np.asarray(jaxloss.simulate(pop[:130]).score)
    return out


def test_two_cpu_devices_give_the_one_device_results_bit_for_bit(tmp_path):
    assert shard_count() == 1
    one = workload()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax"))
    done = subprocess.run([sys.executable, "-c", WORKLOAD, "2", str(tmp_path / "two.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    with np.load(tmp_path / "two.npz") as saved:
        two = dict(saved)
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_array_equal(two[key], one[key], err_msg=key)
    assert len(set(one["reasons"].tolist())) > 2  # the workload was judged for real


def test_deal_blocks_round_trip_and_order():
    a = np.arange(8 * 3).reshape(8, 3)  # 4 blocks of 2 genomes
    dealt = batched.deal_blocks(a, blocks=4, shards=2)
    # shard 0 holds blocks 0 and 2, shard 1 blocks 1 and 3
    np.testing.assert_array_equal(dealt[:, 0], [0, 3, 12, 15, 6, 9, 18, 21])
    np.testing.assert_array_equal(batched.deal_blocks(dealt, blocks=4, shards=2, back=True), a)
    np.testing.assert_array_equal(
        np.asarray(batched.deal_blocks(jnp.asarray(a), blocks=4, shards=2)), dealt)


def test_padding_gives_every_device_the_same_number_of_blocks(monkeypatch):
    monkeypatch.setattr(batched.devices, "shard_count", lambda: 3)
    pop = jaxloss.sample("reg", 10, seed=0, max_nodes=8)
    size = batched.pad(pop, block=4).size
    assert len(size) == 3 * 4 * 1  # 3 blocks of 4 would do: one per device
    size = batched.pad(pop, block=2).size
    assert len(size) == 3 * 2 * 2  # 5 blocks needed: 2 per device (a power of two)
    assert size[10:].tolist() == [0, 0] and size[:10].tolist() == pop.size.tolist()


def test_choosing_devices_after_jax_has_run_is_a_clear_error():
    jaxloss.evaluate("i / u", branch="reg", **make_inputs("reg", 4))  # JAX has computed
    with pytest.raises(RuntimeError, match="before JAX computes anything"):
        use_cpu_cores(2)
    assert use_cpu_cores(2, strict=False) == shard_count()  # the default leaves the process be
    with pytest.raises(ValueError, match="at least 1"):
        use_cpu_cores(0)


def test_cli_rejects_a_bad_device_count(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["--cpu-devices", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--cpu-devices must be at least 1" in err and "Traceback" not in err

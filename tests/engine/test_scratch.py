"""The engine buffers kept between calls (jaxloss.scratch): reusing them, whatever they hold, gives
the results of fresh ones; only a few shapes are kept; a buffer of the wrong shape is refused."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.engine import batched, scratch
from jaxloss.filters.checks import _prepare


def _as_arrays(verdicts):
    return verdicts.reason_code, np.stack([verdicts.measures[k] for k in sorted(verdicts.measures)])


def test_checks_in_reused_buffers_equal_checks_in_fresh_ones():
    scratch.release()
    pop = jaxloss.sample("cls_binary", 300, seed=11, max_nodes=14)
    other = jaxloss.sample("reg", 100, seed=12, max_nodes=10)
    fresh = _as_arrays(jaxloss.check(pop))
    jaxloss.check(other)  # another shape's buffers in between
    again = _as_arrays(jaxloss.check(pop))  # in the buffers the first call left
    shuffled = _as_arrays(jaxloss.check(pop[np.arange(len(pop))[::-1]]))
    for a, b in zip(fresh, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fresh, shuffled):
        np.testing.assert_array_equal(a[..., ::-1], b)
    full = _as_arrays(jaxloss.check(pop, screen=False))
    np.testing.assert_array_equal(_as_arrays(jaxloss.check(pop, screen=False))[1], full[1])


def test_only_a_few_shapes_are_kept_and_release_frees_them(monkeypatch):
    monkeypatch.setattr(scratch, "MAX_KEPT", 2)
    scratch.release()
    latest = []
    for k, n in enumerate([10, 70, 130]):  # blocks of 64, 128, 256: three shapes
        jaxloss.check(jaxloss.sample("cls_binary", n, seed=k, max_nodes=8))
        assert len(scratch._kept) == min(k + 1, 2)
        latest.append(next(reversed(scratch._kept)))
    assert len(set(latest)) == 3
    assert list(scratch._kept) == latest[1:]  # the least recently used went first
    scratch.release()
    assert not scratch._kept


def test_a_scratch_buffer_of_the_wrong_shape_is_refused():
    pop = jaxloss.sample("cls_binary", 64, seed=1, max_nodes=8)
    full = _prepare("cls_binary", 1)
    genomes = batched.pad(pop, 64)
    wrong = (jnp.zeros((10, full.leaves.shape[1])), None)
    with pytest.raises(ValueError, match="do not fit"):
        batched.evaluate_population(genomes, full.leaves, scratch=wrong, chunk=4, num_classes=1,
                                    block=64)

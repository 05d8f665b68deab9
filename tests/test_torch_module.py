"""``bridge.to_torch`` computes what ``jaxloss.evaluate`` computes (values; gradients in issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
import jaxloss
from jaxloss import LIBRARY
from tests.conftest import make_inputs


def _torch_values(loss, inputs):
    module = bridge.to_torch(loss)
    with torch.no_grad():
        return module(**{k: torch.tensor(v, dtype=torch.float32) for k, v in inputs.items()}).numpy()


@pytest.mark.parametrize("name", list(LIBRARY))
def test_library_losses_match_jax(name):
    loss = LIBRARY[name]
    inputs = make_inputs(loss.branch, 128)
    (ours,) = jaxloss.evaluate(loss, **inputs)
    np.testing.assert_allclose(_torch_values(loss, inputs), ours, rtol=1e-5, atol=1e-6)


def test_random_losses_match_jax_at_almost_every_point(branch):
    pop = jaxloss.sample(branch, 60, seed=9, max_nodes=16)
    inputs = make_inputs(branch, 64, seed=2)
    ours = jaxloss.evaluate(pop, **inputs)
    for k in range(len(pop)):
        theirs = _torch_values(pop[k], inputs)
        close = np.isclose(theirs, ours[k], rtol=1e-4, atol=1e-5, equal_nan=True)
        assert close.mean() >= 0.95, f"{pop[k]}: {np.sum(~close)} points differ"


def test_formula_text_needs_a_branch():
    with pytest.raises(ValueError, match="branch"):
        bridge.to_torch("1 - i/u")
    assert str(bridge.to_torch("1 - i/u", "reg").loss) == "1 - i / u"

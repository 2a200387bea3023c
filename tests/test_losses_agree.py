"""One definition of each loss: the closed-form theory (``negrec.theory.bounds``, NumPy)
and the bound monitor compute CCE, BPR and BCE as the training losses of
``negrec.losses`` do (the monitor calls their ``rows``; the theory is checked here)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from negrec.losses import make_loss
from negrec.monitor import BoundMonitor
from negrec.theory import bounds as B

scores = st.floats(-30.0, 30.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 8)),
    data=st.data(),
)
def test_theory_losses_are_the_training_losses(shape: tuple[int, int], data: st.DataObject):
    rows, k = shape
    s_pos = data.draw(arrays(np.float64, (rows,), elements=scores))
    s_neg = data.draw(arrays(np.float64, (rows, k), elements=scores))
    for name in B.BOUND_LOSSES:
        theory = B.sampled_loss(name, s_pos, s_neg)  # [B]
        trained = make_loss(name).rows(torch.from_numpy(s_pos), torch.from_numpy(s_neg))
        # rtol: torch's softplus returns x itself above x = 20 (off by < e^-20 per term)
        np.testing.assert_allclose(theory, trained.numpy(), rtol=1e-9, atol=1e-12)


def test_the_monitor_uses_the_training_losses():
    monitor = BoundMonitor([4])
    assert set(monitor.loss_fns) == set(B.BOUND_LOSSES)
    for name, loss in monitor.loss_fns.items():
        assert type(loss) is type(make_loss(name))
        assert loss.config == make_loss(name).config  # summed over negatives, as the theory

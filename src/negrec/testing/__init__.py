"""Conformance tests for plugins: inherit a mixin, name your plugin, get its contract.

A loss, sampler or model written in another package checks itself against the contract
every built-in one passes (LensKit-style conformance mixins)::

    from negrec.testing import LossContract

    class TestMyLoss(LossContract):
        name = "my_loss"            # its registered name
        options = {"margin": 0.5}   # small options for the tests (optional)

        def reference(self, pos, neg):  # the loss of one positive, written plainly
            ...

``SamplerContract`` and ``ModelContract`` work the same way (see their docstrings). A
plugin class defined in the test module itself can be named with ``plugin = MyLoss``: it is
registered under ``name`` for each test only, so nothing leaks into other tests. The
mixins parametrise over the losses, samplers and models registered when the tests are
collected, the built-in ones and yours.

This module imports pytest (and numpy, torch): install negrec with its ``test`` extra
(``pip install 'negrec[test]'``). For pytest's detailed assertion messages inside the
mixins, call ``pytest.register_assert_rewrite("negrec.testing")`` in your ``conftest.py``
before importing it.
"""

from negrec.testing.losses import LossContract
from negrec.testing.models import ModelContract
from negrec.testing.samplers import SamplerContract

__all__ = ["LossContract", "ModelContract", "SamplerContract"]

"""What the contract mixins share: devices, the parametrisation over registered plugins,
and a loss built with whichever of some options it takes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch

from negrec.losses import LOSSES, Loss, make_loss
from negrec.models import MODELS
from negrec.registry import Registry
from negrec.samplers import SAMPLERS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def parametrize_plugins(self: Any, metafunc: pytest.Metafunc) -> None:
    """``pytest_generate_tests`` of the mixins: a test asking for ``loss_name``,
    ``sampler_name`` or ``model_name`` runs once per name registered when the tests are
    collected (plugins of the package under test included); ``device`` once per device."""
    plugins = {
        "loss_name": LOSSES.names,
        "sampler_name": SAMPLERS.names,
        "model_name": MODELS.names,
        "device": lambda: DEVICES,
    }
    for arg, names in plugins.items():
        if arg in metafunc.fixturenames:
            metafunc.parametrize(arg, names())


def loss_with(name: str, **options: Any) -> Loss:
    """The loss ``name`` with those of ``options`` its config takes (e.g. ``margin``)."""
    keys = LOSSES.get(name, "loss.name").option_keys()
    return make_loss(name, **{key: value for key, value in options.items() if key in keys})


class PluginContract:
    """What the loss, sampler and model contract mixins share: the plugin under test by
    ``name`` and, when a test class gives ``plugin`` (a class defined beside the test),
    that class registered under ``name`` in ``registry`` for each test only."""

    name: ClassVar[str]
    #: the registry the plugin lives in (LOSSES, SAMPLERS, MODELS)
    registry: ClassVar[Registry[Any]]
    #: a plugin class defined beside the test, registered under ``name`` for each test
    #: only (None: ``name`` is registered already)
    plugin: ClassVar[type | None] = None

    pytest_generate_tests = parametrize_plugins

    @pytest.fixture(autouse=True)
    def _registered(self) -> Iterator[None]:
        if self.plugin is None:
            yield
        else:
            with self.registry.registered(self.name, self.plugin):
                yield

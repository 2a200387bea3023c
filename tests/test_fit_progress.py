"""``fit(progress=...)``: a tqdm bar when someone watches (a terminal or a notebook), silent
otherwise, switchable: True always, False never, None (default) decides by
:func:`negrec.train.interactive`."""

from __future__ import annotations

import io
import sys
import types

import pytest
import torch

from negrec import MF, Loss, LossConfig, ModelConfig, TrainConfig, fit, random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.samplers import UniformSampler
from negrec.samplers.uniform import UniformConfig
from negrec.train import EarlyStopping, ProgressBar, _with_progress, interactive

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, and keeps what was written."""

    def isatty(self) -> bool:
        return True


def train(progress: bool | None, callbacks=()) -> None:
    split = random_split(synthetic_interactions(20, 30, 5.0, seed=0), 0.2, 0.1, seed=0)
    model = MF(ModelConfig(dim=4), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=2), split.train)
    config = TrainConfig(epochs=3, batch_size=32)
    fit(model, sampler, Loss(LossConfig()), split, config, callbacks=callbacks, progress=progress)


def test_on_shows_a_bar_even_when_not_a_terminal(capsys):
    train(progress=True)
    err = capsys.readouterr().err
    assert "epoch/s" in err and "/3 [" in err and "loss=" in err


def test_off_is_silent_even_in_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train(progress=False)
    assert terminal.getvalue() == ""


def test_auto_is_silent_when_stderr_is_not_a_terminal(capsys):
    assert not interactive()  # pytest's captured stderr is no terminal
    train(progress=None)
    assert capsys.readouterr().err == ""


def test_auto_shows_the_bar_in_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert interactive()
    train(progress=None)
    assert "epoch/s" in terminal.getvalue()


def test_auto_counts_a_jupyter_kernel_as_watched(monkeypatch, capsys):
    shell = types.SimpleNamespace(kernel=object())  # what IPython's get_ipython() is there
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert interactive()
    fake.get_ipython = lambda: None  # type: ignore[attr-defined]  # plain IPython-less script
    assert not interactive()


def test_a_progress_bar_callback_is_not_doubled():
    own = ProgressBar("ndcg@20")
    assert _with_progress([own], True, world_rank0()) == [own]
    stopper = EarlyStopping("recall@10", patience=0)
    added = _with_progress([stopper], True, world_rank0())
    assert len(added) == 2 and isinstance(added[1], ProgressBar)
    assert added[1].key == "valid/recall@10" and added[1].enabled is True
    assert _with_progress([stopper], False, world_rank0()) == [stopper]


def world_rank0():
    from negrec.distributed import LOCAL

    return LOCAL

"""Shared fixtures: tiny known-answer interactions and splits, and the shared-data path.

Kept small and general on purpose: test files add their own specialised fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.experiment import rundir
from negrec.experiment.config import ExperimentConfig

# the contract mixins' asserts report like the tests' own (before any test imports them)
pytest.register_assert_rewrite("negrec.testing")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster, and immune to a busy machine. Modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_interactions(
    rows: list[list[int]],
    n_items: int,
    timestamps: list[list[float]] | None = None,
) -> Interactions:
    """Interactions from one list of item ids per user (and optional aligned timestamps)."""
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else []
    times = None
    if timestamps is not None:
        times = np.concatenate([np.asarray(t, dtype=np.float64) for t in timestamps])
    return Interactions.from_arrays(
        users,
        np.asarray(items, dtype=np.int64),
        n_users=len(rows),
        n_items=n_items,
        timestamps=times,
    )


@pytest.fixture
def tiny_interactions() -> Interactions:
    """4 users x 8 items, with timestamps; user 3 has a single item."""
    rows = [[0, 1, 2, 5], [1, 3, 4, 6, 7], [0, 2, 7], [4]]
    times = [[1.0, 4.0, 2.0, 3.0], [5.0, 1.0, 2.0, 4.0, 3.0], [2.0, 1.0, 3.0], [1.0]]
    return make_interactions(rows, 8, times)


@pytest.fixture
def tiny_split() -> Split:
    """4 users x 8 items: hand-written train / valid / test rows, pairwise disjoint."""
    train = make_interactions([[0, 1], [2, 3, 4], [5], [0, 7]], 8)
    valid = make_interactions([[2], [5], [6], []], 8)
    test = make_interactions([[3, 4], [6], [0, 7], [1]], 8)
    return Split(train=train, valid=valid, test=test)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_fake_run(
    folder: Path,
    name: str,
    *,
    loss: str = "bpr",
    seed: int = 0,
    k: int = 1,
    history: list[dict[str, float]] | None = None,
    valid: dict[str, float] | None = None,
    test: dict[str, float] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """A complete run directory written by hand (no training): the resolved config (MF,
    uniform sampler, 3 epochs, plus ``config`` sections), ``history`` rows, and a summary
    with best epoch 3 and the given ``valid`` / ``test`` metrics (by default one epoch
    and NDCG@20 = 0.1 everywhere)."""
    history = history or [{"epoch": 1, "loss": 1.0, "valid/ndcg@20": 0.1}]
    valid = valid or {"ndcg@20": 0.1}
    test = test or {"ndcg@20": 0.1}
    raw: dict[str, Any] = {
        "name": name,
        "output": str(folder),
        "loss": {"name": loss},
        "sampler": {"k": k},
        "train": {"seed": seed, "epochs": 3},
        **(config or {}),
    }
    path = folder / name
    path.mkdir(parents=True)
    rundir.write_toml(path / "config.toml", ExperimentConfig.from_dict(raw).to_toml_dict())
    rundir.write_json(path / "environment.json", {"python": "3"})
    pd.DataFrame(history).to_csv(path / "history.csv", index=False)
    summary = {
        "name": name,
        "model": "mf",
        "loss": loss,
        "sampler": "uniform",
        "k": k,
        "seed": seed,
        "selection_metric": "ndcg@20",
        "best_epoch": 3,
        "valid": valid,
        "test": test,
    }
    rundir.write_json(path / "summary.json", summary)
    return path

"""Large tables in huge pages (negrec._fast.hugepages): advised memory, the same values, and
the same training bit for bit."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch

from negrec._fast import hugepages
from negrec.data.splits import random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.train import fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LARGE = hugepages.MIN_BYTES // 4 // 64  # float32 rows of 64: exactly MIN_BYTES


def _mapping_flags(address: int) -> list[str]:
    """The VmFlags of the mapping that holds ``address`` (Linux's /proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags:"):
            return line.split()[1:]
    return []


def test_small_tables_stay_ordinary_tensors() -> None:
    small = torch.randn(10, 4)
    assert hugepages.copy_of(small) is small
    zeros = hugepages.zeros_like(small)
    assert zeros.shape == small.shape and zeros.dtype == small.dtype and not zeros.any()


def test_large_tables_are_zeroed_aligned_and_advised() -> None:
    like = torch.empty(LARGE, 64)
    zeros = hugepages.zeros_like(like)
    assert zeros.shape == like.shape and zeros.dtype == like.dtype and zeros.is_contiguous()
    assert not zeros.any()
    if not hugepages.supported():
        pytest.skip("no MADV_HUGEPAGE here: ordinary tensors")
    assert zeros.data_ptr() % hugepages.HUGE_PAGE == 0
    zeros.fill_(1.0)  # writable
    if Path("/proc/self/smaps").exists():
        assert "hg" in _mapping_flags(zeros.data_ptr())  # madvise(MADV_HUGEPAGE) took


def test_a_copy_keeps_the_values_and_survives_save_and_deepcopy() -> None:
    table = torch.randn(LARGE, 64)
    moved = hugepages.copy_of(table)
    assert torch.equal(moved, table)
    moved.add_(1.0)  # its own memory
    assert not torch.equal(moved, table)
    buffer = io.BytesIO()
    torch.save({"w": moved}, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer)["w"], moved)
    assert torch.equal(copy.deepcopy(moved), moved)


def _train(monkeypatch: pytest.MonkeyPatch, min_bytes: int, optimizer: str) -> torch.nn.Module:
    monkeypatch.setattr(hugepages, "MIN_BYTES", min_bytes)
    data = synthetic_interactions(n_users=60, n_items=80, mean_degree=8.0, n_clusters=3, seed=2)
    split = random_split(data, 0.2, 0.1, 0)
    config = ExperimentConfig.from_dict(
        {
            "data": {"source": "synthetic"},
            "model": {"name": "mf", "dim": 8},
            "sampler": {"name": "uniform", "k": 1},
            "loss": {"name": "bpr"},
            "train": {"epochs": 2, "batch_size": 16, "optimizer": optimizer, "eval_every": 100},
        }
    )
    parts = build_components(config, split)
    fit(parts.model, parts.sampler, parts.loss, split, config.train)
    return parts.model


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "sgd"])
def test_training_in_huge_pages_gives_the_same_bits(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every table moved (MIN_BYTES = 0) or none: the same weights after training."""
    if not hugepages.supported():
        pytest.skip("no MADV_HUGEPAGE here")
    moved = _train(monkeypatch, 0, optimizer)
    for table in (moved.user.weight, moved.item.weight):  # (the move happened)
        assert table.data_ptr() % hugepages.HUGE_PAGE == 0
    plain = _train(monkeypatch, 1 << 62, optimizer)
    for name, value in plain.state_dict().items():
        assert torch.equal(moved.state_dict()[name], value), name

"""Data-parallel training (``negrec run CONFIG --distributed`` under torchrun).

Two CPU ranks (gloo) started by ``python -m torch.distributed.run`` run ``negrec run
CONFIG --distributed`` on tiny synthetic data; with the same global batch they must end
where one process ends, up to float rounding: the same weights, validation and test
metrics, losses and early-stopping epoch. Every sampler that does not score with the
model draws its negatives for the global batch, so this holds for the uniform and
in-batch samplers too, not only for the deterministic full softmax. A plain uniform run
must leave exactly one run directory, written and reported by rank 0.

To pay torchrun's and two interpreters' start-up once, one launch runs every config: a
worker calls ``negrec.cli.main(argv)`` (the ``negrec`` script's entry point) per config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomli_w
import torch

from negrec.cli import main
from negrec.distributed import TORCHRUN_ENV, World
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import load_split, run_experiment

# 120 users x 90 items: 985 training pairs, so a batch of 123 leaves a last batch of one
# row, and rank 1 gets no rows of it
DATA = {"synthetic": {"n_users": 120, "n_items": 90, "mean_degree": 11}}
BASE: dict[str, Any] = {
    "data": DATA,
    "model": {"name": "mf", "dim": 8},
    "eval": {"ks": [5, 10]},
    "train": {"epochs": 4, "lr": 0.05, "patience": 2, "metric": "ndcg@10"},
}
EXACT: dict[str, dict[str, Any]] = {
    # deterministic negatives; 985 = 9 x 100 + 85: a ragged last batch split 43 / 42
    "full": {
        "sampler": {"name": "full"},
        "loss": {"name": "softmax"},
        "train": {"batch_size": 100},
    },
    # row-sparse gradients (all-gathered), the explicit L2 term, an empty last slice
    "uniform-lazy": {
        "sampler": {"name": "uniform", "k": 3},
        "loss": {"name": "bpr"},
        "train": {"batch_size": 123, "optimizer": "lazy_adam", "l2": 1e-3},
    },
    # shared candidates: each rank scores its rows against the global batch's positives
    "inbatch": {
        "sampler": {"name": "inbatch"},
        "loss": {"name": "cce"},
        "train": {"batch_size": 128},
    },
    # a sequential model: each rank keeps only the history windows its rows read
    "sasrec": {
        "model": {"name": "sasrec", "dim": 8, "max_len": 8, "blocks": 1, "dropout": 0.0},
        "split": {"method": "leave_one_out", "valid": "last"},
        "sampler": {"name": "uniform", "k": 2},
        "loss": {"name": "bce"},
        "train": {"batch_size": 100, "epochs": 2},
    },
}
# the key bias of attention has a zero gradient in exact arithmetic (softmax ignores a
# shift of every key score): Adam turns its float noise into lr-sized steps, differently in
# any two runs, and the scores do not depend on it
NO_GRADIENT = {"sasrec": {"blocks.0.qkv.bias": slice(8, 16)}}  # dim 8: [q | k | v]
# hard negatives: each rank draws for its own rows with its own generator (not exact)
HARD = {"sampler": {"name": "dns", "k": 2, "pool": 8}, "loss": {"name": "bpr"}}
PLAIN = {"sampler": {"name": "uniform", "k": 4}}

WORKER = """
import json, sys
from negrec.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
"""


def _config(name: str, extra: dict[str, Any], output: Path) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": name, "output": str(output)}
    for key in {*BASE, *extra}:
        base, more = BASE.get(key, {}), extra.get(key, {})
        raw[key] = {**base, **more}
    return raw


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node 2 ARGS`` (a free
    rendezvous port is picked by torchrun), one thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", *args]
    process = subprocess.Popen(
        command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGTERM: torchrun stops its ranks (a SIGKILL would leave them running)
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"torchrun hung; its output:\n{stdout[-3000:]}\n{stderr[-5000:]}")
    assert process.returncode == 0, stdout[-3000:] + stderr[-5000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


# ------------------------------------------------------------------ no process needed
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_rank_slices_tile_the_global_batch_in_order(size):
    for n in range(12):
        slices = [World(rank=r, size=size).rows(n) for r in range(size)]
        rows = [i for s in slices for i in range(n)[s]]
        assert rows == list(range(n))  # contiguous, in rank order, nothing twice
        lengths = [s.stop - s.start for s in slices]
        assert max(lengths) - min(lengths) <= 1


def test_rank_generators_are_per_rank_and_epoch_and_the_training_one_alone():
    shared = torch.Generator().manual_seed(3)
    assert World().rank_generator(shared, seed=3, epoch=1) is shared

    def draw(rank: int, epoch: int) -> torch.Tensor:
        world = World(rank=rank, size=2, backend="gloo")
        return torch.rand(4, generator=world.rank_generator(shared, seed=3, epoch=epoch))

    assert torch.equal(draw(1, 2), draw(1, 2))  # reproducible: resuming needs no state
    assert not torch.equal(draw(0, 2), draw(1, 2))
    assert not torch.equal(draw(1, 2), draw(1, 3))


def test_distributed_outside_torchrun_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "c.toml"
    config.write_text(tomli_w.dumps(_config("x", EXACT["full"], tmp_path / "runs")))
    assert main(["run", str(config), "--distributed"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "torchrun" in err and "RANK" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ two ranks
def _launch(folder: Path) -> subprocess.CompletedProcess[str]:
    """One torchrun launch of 2 ranks: every config of EXACT and HARD (quiet, into
    folder / "two"), then a plain uniform run with progress messages (folder / "cli")."""
    argv = []
    for name, extra in [*EXACT.items(), ("hard", HARD), ("uniform", PLAIN)]:
        path = folder / f"{name}.toml"
        output = folder / ("cli" if name == "uniform" else "two")
        path.write_text(tomli_w.dumps(_config(name, extra, output)))
        argv.append(["run", str(path), "--distributed", *(["--quiet"] * (name != "uniform"))])
    (folder / "worker.py").write_text(WORKER)
    return _torchrun([str(folder / "worker.py"), json.dumps(argv)], cwd=folder)


def test_two_ranks_train_like_one_process_and_rank_0_alone_writes(tmp_path):
    """One test, so that ``pytest -n 2`` launches the ranks once."""
    result = _launch(tmp_path)
    two = {p.name: p for p in _runs(tmp_path / "two")}
    assert sorted(two) == sorted([*EXACT, "hard"])  # one run directory per config, no more
    for name in EXACT:
        _check_same_as_one_process(name, two[name], tmp_path / "one")
    _check_hard_negatives(two["hard"])
    _check_plain_run(tmp_path / "cli", result)


def _check_same_as_one_process(name: str, two: Path, output: Path) -> None:
    """Same weights, selected epoch, validation and test metrics and losses as one process."""
    alone = run_experiment(
        ExperimentConfig.from_dict(_config(name, EXACT[name], output)), progress=False
    )
    weights_alone = torch.load(alone / "best.pt", weights_only=True)
    weights_two = torch.load(two / "best.pt", weights_only=True)
    assert weights_alone.keys() == weights_two.keys(), name
    for key, value in weights_alone.items():
        kept = torch.ones(value.shape[0], dtype=torch.bool)
        kept[NO_GRADIENT.get(name, {}).get(key, slice(0, 0))] = False
        torch.testing.assert_close(
            weights_two[key][kept], value[kept], rtol=1e-4, atol=1e-5, msg=f"{name}: {key}"
        )
    one, both = _summary(alone), _summary(two)
    assert (both["best_epoch"], both["epochs_run"]) == (one["best_epoch"], one["epochs_run"]), name
    assert both["n_test_users"] == one["n_test_users"], name
    for part in ("valid", "test"):
        assert both[part].keys() == one[part].keys(), name
        for metric, value in one[part].items():
            assert both[part][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, metric)
    history_one, history_two = (pd.read_csv(p / "history.csv") for p in (alone, two))
    np.testing.assert_allclose(history_two["loss"], history_one["loss"], rtol=1e-5, err_msg=name)


def _check_hard_negatives(run: Path) -> None:
    """DNS draws per rank (its own generator): it trains, but is not one process's run."""
    summary = _summary(run)
    assert summary["epochs_run"] >= 1
    assert all(np.isfinite(v) for v in summary["test"].values())


def _check_plain_run(folder: Path, result: subprocess.CompletedProcess[str]) -> None:
    """The plain uniform run: one complete run directory, no staging directory left, one
    table and one progress message (rank 0's)."""
    (run,) = _runs(folder)
    assert run.name == "uniform"
    assert not list(folder.glob(".*"))
    files = {p.name for p in run.iterdir()}
    assert {"config.toml", "history.csv", "summary.json", "best.pt", "test_per_user.csv"} <= files
    assert "checkpoint.pt" not in files
    env = json.loads((run / "environment.json").read_text())
    assert env["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert len(pd.read_csv(run / "history.csv")) == _summary(run)["epochs_run"]
    assert len([line for line in result.stdout.splitlines() if line.startswith("| uniform |")]) == 1
    assert result.stderr.count("negrec: training into") == 1


def test_batch_sizes_above_leave_a_one_row_last_batch():
    config = ExperimentConfig.from_dict(_config("x", EXACT["uniform-lazy"], Path("unused")))
    assert load_split(config).train.nnz % config.train.batch_size == 1

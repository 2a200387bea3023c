"""Crash safety: a run killed mid-training (SIGKILL, a real process) resumes from its last
checkpoint with ``negrec run --resume`` and ends with exactly the numbers of an
uninterrupted run with the same seed; a diverging run keeps its last good checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from negrec.experiment.config import ExperimentConfig
from negrec.experiment.rundir import CHECKPOINT, find_resumable
from negrec.experiment.runner import run_experiment
from negrec.losses import Loss
from negrec.train import TrainingDiverged

RAW = {
    "name": "killme",
    "data": {"synthetic": {"n_users": 300, "n_items": 500, "mean_degree": 40}},
    "sampler": {"name": "uniform", "k": 4},
    "loss": {"name": "cce"},
    "train": {"epochs": 40, "lr": 0.002, "patience": 0, "batch_size": 256},
    "eval": {"ks": [10, 20], "auc": False},
}


def _toml(raw: dict) -> str:
    import tomli_w

    return tomli_w.dumps(raw)


def _checkpoint_epoch(output: Path) -> int:
    for staging in output.glob(".killme.tmp-*"):
        if (staging / CHECKPOINT).exists():
            try:
                return int(torch.load(staging / CHECKPOINT, weights_only=True)["epoch"])
            except Exception:  # being replaced right now: look again
                return 0
    return 0


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    config_path = tmp_path / "run.toml"
    config_path.write_text(_toml(RAW))
    output = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "negrec", "run", str(config_path), "--output", str(output)]
    process = subprocess.Popen([*command, "--quiet"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _checkpoint_epoch(output) < 3:
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    staging = find_resumable(output / "killme")
    assert staging.name.startswith(".killme.tmp-")

    resumed = subprocess.run(
        [sys.executable, "-m", "negrec", "run", "--resume", str(output / "killme"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    finished = output / "killme"
    assert not staging.exists() and not (finished / CHECKPOINT).exists()

    reference = run_experiment(
        ExperimentConfig.from_dict({**RAW, "output": str(tmp_path / "clean")}), progress=False
    )
    got = json.loads((finished / "summary.json").read_text())
    want = json.loads((reference / "summary.json").read_text())
    assert got["test"] == want["test"]
    assert got["valid"] == want["valid"] and got["best_epoch"] == want["best_epoch"]
    history = (finished / "history.csv").read_text().splitlines()
    assert len(history) == RAW["train"]["epochs"] + 1  # every epoch once, none twice


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_call = Loss.__call__

    def nan_in_epoch_two(self, pos, neg, **kwargs):
        calls["n"] += 1
        value = real_call(self, pos, neg, **kwargs)
        return value * float("nan") if calls["n"] > 3 else value

    real_value_and_grad = Loss.value_and_grad

    def nan_in_epoch_two_fused(self, scores, **kwargs):  # MF's fused step (the default)
        calls["n"] += 1
        value, grad = real_value_and_grad(self, scores, **kwargs)
        return (value * float("nan"), grad) if calls["n"] > 3 else (value, grad)

    monkeypatch.setattr(Loss, "__call__", nan_in_epoch_two)
    monkeypatch.setattr(Loss, "value_and_grad", nan_in_epoch_two_fused)
    raw = {
        **RAW,
        "data": {"synthetic": {"n_users": 40, "n_items": 60, "mean_degree": 20}},
        "train": {**RAW["train"], "batch_size": 256, "epochs": 5},
        "output": str(tmp_path / "runs"),
    }
    config = ExperimentConfig.from_dict(raw)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch \d"):
        run_experiment(config, progress=False)
    staging = find_resumable(tmp_path / "runs" / "killme")
    assert torch.load(staging / CHECKPOINT, weights_only=True)["epoch"] == 1


def test_resume_refuses_a_folder_without_an_interrupted_run(tmp_path):
    from negrec.errors import NegrecError

    with pytest.raises(NegrecError, match="no interrupted run"):
        find_resumable(tmp_path / "nothing")

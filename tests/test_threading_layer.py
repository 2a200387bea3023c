"""numba's thread pool must run on the workqueue layer negrec picks: on OpenMP a blocked
MF step on 2 threads ran at one thread's speed (benchmarks/RESULTS.md, "Threads")."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_training_runs_numba_on_the_workqueue_layer():
    """Regression: the benchmarks started numba's pool before importing negrec, so they
    measured the OpenMP layer. Importing negrec first gives workqueue."""
    code = """
import numba, torch
from negrec.data.synthetic import synthetic_interactions
from negrec.data.splits import random_split
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.train import fit
numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
split = random_split(synthetic_interactions(n_users=60, n_items=80, mean_degree=8), 0.2, 0.1, 0)
config = ExperimentConfig.from_dict({"model": {"name": "mf", "dim": 8},
    "train": {"epochs": 1, "batch_size": 32, "eval_every": 100}})
parts = build_components(config, split)
fit(parts.model, parts.sampler, parts.loss, split, config.train)
print(numba.threading_layer())
"""
    assert run(code) == "workqueue"


def test_a_pool_started_on_openmp_before_negrec_warns():
    code = """
import warnings, numba
numba.config.THREADING_LAYER = "omp"
try:
    numba.set_num_threads(1)  # starts the pool
except Exception:
    print("no-omp")
    raise SystemExit
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import negrec._fast.kernels
print(numba.threading_layer(), any("set_num_threads" in str(w.message) for w in caught))
"""
    out = run(code)
    if out == "no-omp":
        pytest.skip("numba has no OpenMP layer here")
    assert out == "omp True"

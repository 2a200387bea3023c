"""Local sweeps (negrec.experiment.sweep): what a resumed sweep does with what is on disk,
and the real thing end to end: ``negrec sweep`` in a subprocess with one worker on a
grid of 3 tiny runs, the worker process killed with SIGKILL in the middle of the second
run, then the same command again. The finished runs must be untouched (same inode and
mtime), the killed one redone from scratch, nothing duplicated.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomllib

from negrec.errors import NegrecError
from negrec.experiment import rundir
from negrec.experiment.grid import load_grid
from negrec.experiment.sweep import (
    LOCK_NAME,
    plan_sweep,
    run_sweep,
    staging_dirs,
    sweep_lock,
    worker_threads,
)

GRID = """\
name = "resume"

[data.synthetic]
n_users = 40
n_items = 60
mean_degree = 8

[model]
dim = 8

[eval]
ks = [5, 10]

[train]
epochs = {epochs}
patience = 0
metric = "ndcg@10"

[grid]
seeds = [0, 1, 2]
"""
NAMES = ["seed=0", "seed=1", "seed=2"]


def fake_finished_run(grid, index: int, **config_changes) -> Path:
    """A complete run directory for grid run ``index`` written by hand (no training)."""
    run = grid.runs[index]
    path = grid.folder / run.name
    path.mkdir(parents=True)
    stored = run.config.to_toml_dict()
    for section, values in config_changes.items():
        stored[section].update(values)
    rundir.write_toml(path / "config.toml", stored)
    for name in ("environment.json", "summary.json"):
        rundir.write_json(path / name, {})
    (path / "history.csv").write_text("epoch\n1\n")
    return path


def test_plan_skips_finished_redoes_stale_and_refuses_changed_runs(tmp_path):
    config = tmp_path / "g.toml"
    config.write_text(GRID.format(epochs=2))
    grid = load_grid(config, folder=tmp_path / "runs")
    assert [p.status for p in plan_sweep(grid)] == ["todo"] * 3

    fake_finished_run(grid, 0)
    stale = tmp_path / "runs" / ".seed=1.tmp-abc123"
    stale.mkdir()
    (tmp_path / "runs" / ".seed=10.tmp-zzz").mkdir()  # another run's: not seed=1's
    plans = plan_sweep(grid)
    assert [p.status for p in plans] == ["done", "stale", "todo"]
    assert plans[1].staging == [stale]
    assert staging_dirs(tmp_path / "runs", "seed=1") == [stale]

    fake_finished_run(grid, 2, train={"epochs": 5})  # finished under another config
    plans = plan_sweep(grid)
    assert plans[2].status == "conflict" and "train.epochs: 5 in the run, 2 now" in plans[2].detail
    with pytest.raises(NegrecError, match="cannot be resumed"):
        run_sweep(grid, workers=1, log=lambda _: None)
    assert stale.exists()  # refused before touching anything

    # a key added to negrec after the run was made is read as its default: still done
    finished = grid.folder / grid.runs[0].name
    stored = tomllib.loads((finished / "config.toml").read_text())
    del stored["train"]["fused"]
    rundir.write_toml(finished / "config.toml", stored)
    assert plan_sweep(grid)[0].status == "done"

    # the device is not part of the experiment: resuming on another machine is fine
    moved = load_grid(config, ["train.device=auto"], folder=tmp_path / "runs")
    assert plan_sweep(moved)[0].status == "done"


def test_data_root_spelled_another_way_is_the_same_run(tmp_path, monkeypatch):
    """Regression: a sweep made with data.root=../shared/data refused to resume with
    /work/shared/data (the same folder) because the stored root was compared as a string."""
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    config = tmp_path / "g.toml"
    config.write_text(GRID.format(epochs=2))
    made = load_grid(config, ["data.root=../shared/data"], folder=tmp_path / "runs")
    fake_finished_run(made, 0)

    for spelling in (str(tmp_path / "shared" / "data"), "../shared/./data/", "../shared/data"):
        resumed = load_grid(config, [f"data.root={spelling}"], folder=tmp_path / "runs")
        assert plan_sweep(resumed)[0].status == "done", spelling
    elsewhere = load_grid(config, ["data.root=../other"], folder=tmp_path / "runs")
    plan = plan_sweep(elsewhere)[0]
    assert plan.status == "conflict" and "data.root: '../shared/data' in the run" in plan.detail


def test_one_sweep_per_folder_and_threads_per_worker(tmp_path, monkeypatch):
    config = tmp_path / "g.toml"
    config.write_text(GRID.format(epochs=2))
    grid = load_grid(config, folder=tmp_path / "runs")
    with sweep_lock(grid.folder), pytest.raises(NegrecError, match="another sweep"):
        run_sweep(grid, workers=1, log=lambda _: None)
    assert (grid.folder / LOCK_NAME).exists()

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert worker_threads(1) == cores
    assert worker_threads(10**6) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert worker_threads(1) == 1


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _identity(path: Path) -> list[tuple[int, int]]:
    return [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (path, path / "summary.json")]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL of a worker: Linux")
def test_resume_after_a_worker_is_killed_mid_run(tmp_path):
    (tmp_path / "g.toml").write_text(GRID.format(epochs=40))  # about 0.5 s per run here
    command = [sys.executable, "-m", "negrec", "sweep", "g.toml", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    folder = tmp_path / "runs" / "resume"

    sweep = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(sweep.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        pid = None
        deadline = time.monotonic() + 120
        while pid is None and time.monotonic() < deadline:
            line = lines.get(timeout=120)
            assert line is not None, "".join(output)
            output.append(line)
            if match := re.search(r"\[2/3\] start  seed=1 \(worker pid (\d+)\)", line):
                pid = int(match.group(1))
        assert pid is not None, "".join(output)
        # mid-run: the second run is training in its staging directory
        _wait_for(
            lambda: any((p / "history.csv").exists() for p in staging_dirs(folder, "seed=1")),
            60,
            "the second run to start training",
        )
        assert not (folder / "seed=1").exists()
        os.kill(pid, signal.SIGKILL)
        first_rc = sweep.wait(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    text = "".join(output)
    assert first_rc == 1, text  # one run failed, the sweep went on with the others
    assert f"FAILED seed=1: worker process {pid} was killed by SIGKILL" in text

    assert rundir.is_run_dir(folder / "seed=0") and rundir.is_run_dir(folder / "seed=2")
    assert not (folder / "seed=1").exists()
    (killed,) = staging_dirs(folder, "seed=1")  # only a hidden staging directory
    assert not (killed / "summary.json").exists()
    before = {name: _identity(folder / name) for name in ("seed=0", "seed=2")}

    second = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 finished before, 1 to run (1 redone after a killed attempt)" in second.stdout
    assert "start  seed=1" in second.stdout and "start  seed=0" not in second.stdout
    row = r"\| `resume` \| 3 \| \**[0-9.]+ ± [0-9.]+\** \|"  # 3 seeds, one group
    assert re.search(row, second.stdout), second.stdout

    for name in NAMES:
        assert rundir.is_run_dir(folder / name)
    assert {name: _identity(folder / name) for name in ("seed=0", "seed=2")} == before
    entries = sorted(p.name for p in folder.iterdir())
    assert [e for e in entries if (folder / e).is_dir()] == NAMES  # no -2, no staging left
    assert "report.md" in entries and LOCK_NAME in entries


def test_failed_run_reports_its_message_not_its_index(tmp_path):
    """Regression: a run failing inside a worker was recorded as its queue index (0, 1,
    ...) instead of its error message, and ``negrec sweep`` then crashed printing it."""
    text = GRID.format(epochs=1).replace(
        "[data.synthetic]", '[data]\nsource = "file"\npath = "missing.csv"\n\n[data.synthetic]'
    )
    text = text.replace("[data.synthetic]\nn_users = 40\nn_items = 60\nmean_degree = 8\n", "")
    (tmp_path / "g.toml").write_text(
        text.replace('name = "resume"', f'name = "fails"\noutput = "{tmp_path}/out"')
    )
    grid = load_grid(tmp_path / "g.toml", [])
    result = run_sweep(grid, workers=1, log=lambda line: None)
    assert set(result.failed) == set(NAMES)
    for message in result.failed.values():
        assert isinstance(message, str) and "missing.csv" in message


def test_a_failed_hand_over_to_the_only_worker_does_not_hang_the_sweep(tmp_path, monkeypatch):
    """Regression: when sending a run to a worker failed (the worker had died) and no other
    worker was busy, the sweep waited on an empty list of connections, forever."""
    from multiprocessing.connection import Connection

    def broken_send(self, obj):
        raise BrokenPipeError("the worker is gone")

    monkeypatch.setattr(Connection, "send", broken_send)  # this process only
    text = GRID.format(epochs=1).replace("seeds = [0, 1, 2]", "seeds = [0]")
    (tmp_path / "g.toml").write_text(
        text.replace('name = "resume"', f'name = "hang"\noutput = "{tmp_path}/out"')
    )
    grid = load_grid(tmp_path / "g.toml", [])
    outcome: queue.Queue = queue.Queue()
    sweep = threading.Thread(
        target=lambda: outcome.put(run_sweep(grid, workers=1, log=lambda line: None)), daemon=True
    )
    sweep.start()
    result = outcome.get(timeout=120)  # queue.Empty here is the hang
    assert list(result.failed) == ["seed=0"]

"""Sweeps on Ray (negrec.experiment.ray_backend): ``negrec sweep CONFIG --ray ADDRESS``
end to end against a Ray head started here (``ray start --head`` on free ports, 2 CPUs),
through the command line in a subprocess, so the ``--ray ADDRESS`` path is the real one:
a 4-run grid with a killed attempt's staging directory lying around runs to completion,
then the same command again redoes nothing. Also the errors that need no Ray: a missing
Ray, and --ray with options it does not go with.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from negrec.cli import main
from negrec.experiment import rundir
from negrec.experiment.grid import load_grid
from negrec.experiment.sweep import LOCK_NAME, plan_sweep, staging_dirs

GRID = """\
name = "rg"

[data.synthetic]
n_users = 40
n_items = 60
mean_degree = 8

[model]
dim = 8

[eval]
ks = [5, 10]

[train]
epochs = 2
patience = 0
metric = "ndcg@10"

[grid]
seeds = [0, 1]
loss.name = ["bpr", "cce"]
"""
NAMES = sorted(["loss=bpr,seed=0", "loss=bpr,seed=1", "loss=cce,seed=0", "loss=cce,seed=1"])
# light and self-contained: no usage stats, no token (no ~/.ray/auth_token needed)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head node on this machine (2 CPUs, free ports, its own temp dir); yields
    its address. Stopped by killing the process group it was started in."""
    pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="negrec-ray-"))  # short: Ray's socket paths
    port = _free_port()
    ports = {
        f"--{name}={_free_port()}"
        for name in (
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    }
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        f"--port={port}",
        *sorted(ports),
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--object-store-memory={100 * 1024**2}",
        f"--temp-dir={temp}",
    ]
    log = temp / "ray-start.log"
    with open(log, "w") as out:
        head = subprocess.Popen(
            command,
            env={**os.environ, **RAY_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one below
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert head.poll() is None, "ray start failed:\n" + log.read_text(errors="replace")
            assert time.monotonic() < deadline, "ray start timed out:\n" + log.read_text()
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # ray start stops the processes it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # anything left of its process group
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _identity(path: Path) -> list[tuple[int, int]]:
    return [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (path, path / "summary.json")]


@pytest.mark.slow
def test_sweep_on_ray_runs_the_grid_then_resumes_with_nothing_to_do(
    tmp_path, ray_head, monkeypatch, capsys
):
    (tmp_path / "g.toml").write_text(GRID)
    folder = tmp_path / "runs" / "rg"
    killed = folder / ".loss=cce,seed=1.tmp-killed"  # what a killed attempt leaves
    killed.mkdir(parents=True)
    (killed / "history.csv").write_text("epoch\n1\n")
    args = ["sweep", "g.toml", "--ray", ray_head]
    env = {**os.environ, **RAY_ENV}

    first = subprocess.run(
        [sys.executable, "-m", "negrec", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    text = first.stdout + first.stderr
    assert first.returncode == 0, text
    assert "0 finished before, 4 to run (1 redone after a killed attempt)" in text
    assert f"Ray tasks on {ray_head}, 1 CPU(s) each" in text
    assert "ray: 1 node(s), 2 CPU(s); submitting 4 task(s)" in text
    assert "[4/4] done   " in text and "FAILED" not in text
    for name in NAMES:
        assert f"done   {name} in " in text
        assert rundir.is_run_dir(folder / name)
        assert (folder / name / "summary.json").is_file()
    dirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert dirs == NAMES  # the killed attempt is gone, no -2, no staging left
    assert not staging_dirs(folder, "loss=cce,seed=1")
    assert (folder / "report.md").is_file() and (folder / LOCK_NAME).exists()
    # the tasks stored the configs the grid asks for
    grid = load_grid(tmp_path / "g.toml", folder=folder)
    assert [p.status for p in plan_sweep(grid)] == ["done"] * 4

    # the same command again (in this process: it has nothing to start, so it is quick)
    before = {name: _identity(folder / name) for name in NAMES}
    monkeypatch.chdir(tmp_path)
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(args) == 0
    text = "".join(capsys.readouterr())
    assert "4 finished before, 0 to run" in text
    assert "done   " not in text and "submitting" not in text
    assert "sweep rg: 4 of 4 runs complete" in text
    assert {name: _identity(folder / name) for name in NAMES} == before
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == NAMES


def test_missing_ray_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "g.toml").write_text(GRID)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", str(tmp_path / "g.toml"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "pip install 'negrec[ray]'" in err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_ray_options_that_do_not_go_together(tmp_path, capsys):
    config = str(tmp_path / "g.toml")
    (tmp_path / "g.toml").write_text(GRID)
    assert main(["sweep", config, "--ray", "auto", "--workers", "2"]) == 2
    assert "--workers and --ray do not go together" in capsys.readouterr().err
    assert main(["sweep", config, "--ray-cpus-per-run", "2"]) == 2
    assert "--ray-cpus-per-run needs --ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", config, "--ray", "auto", "--ray-cpus-per-run", "0"])
    assert "must be a number > 0" in capsys.readouterr().err


def test_an_address_where_nothing_listens_fails_at_once():
    from negrec.errors import NegrecError
    from negrec.experiment.ray_backend import check_reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")
    with pytest.raises(NegrecError, match="nothing accepts connections"):
        check_reachable(f"127.0.0.1:{port}", timeout=5)  # closed now
    for address in ("auto", "local", None):
        check_reachable(address)

"""Local sweeps: run a grid's configs in worker processes, resumable.

``run_sweep(grid, workers=N)`` runs every run of a :class:`~negrec.experiment.grid.Grid`
that is not finished yet, N at a time, each in a worker process of its own (``spawn``
start method: no state shared with the parent). Workers are started once and fed one
run at a time, so the parent always knows which run each worker holds.

Resuming is the same call again (``negrec sweep CONFIG`` again), after anything:

- A run whose directory ``{folder}/{name}`` is complete (:func:`rundir.is_run_dir`) is
  skipped. Run directories appear by an atomic rename of a finished staging directory,
  so a complete directory is a finished run, never a half-written one.
- A run killed mid-way (Ctrl-C, SIGKILL of a worker or of the whole sweep, machine loss)
  left at most a hidden staging directory ``.{name}.tmp-*``; it is deleted and the run
  redone from the start.
- Run names are deterministic (see :mod:`negrec.experiment.grid`) and a sweep holds an
  exclusive lock on its folder (``.sweep.lock``, released by the kernel when the
  process dies), so no run is ever written twice or under a second name.
- A finished run whose stored config differs from what the grid now asks for (say,
  ``train.epochs`` changed in between) is not silently reused: the sweep stops before
  starting anything and names the runs and keys. Delete those run directories to redo
  them, or sweep into another folder.

Threads: each worker calls ``torch.set_num_threads(max(1, cores // workers))`` (and the
same for numba), capped by ``OMP_NUM_THREADS`` when that is set, so N workers do not
oversubscribe the machine. Workers die with the sweep (Linux: ``PR_SET_PDEATHSIG``;
elsewhere a watchdog thread), so a killed sweep leaves no orphan still writing.

Library use: workers are started with ``spawn``, which re-imports the calling script's
``__main__`` module in each worker, so a script that calls :func:`run_sweep` must do so
under ``if __name__ == "__main__":`` (the ``negrec`` command does).

A worker that dies (killed, out of memory) fails only its own run; the sweep goes on with
the others (starting a fresh worker) and reports the failure at the end; rerunning the
command redoes it. Ctrl-C stops the workers (their runs' staging directories are
removed), prints what is done and what is left, and raises KeyboardInterrupt.

Executors: the planning, locking, skipping and reporting above are the same whatever
trains the runs; what trains them is an :class:`Executor`. :class:`LocalExecutor` is the
worker processes described here (the default); ``RayExecutor`` in
:mod:`negrec.experiment.ray_backend` sends each run to a Ray cluster as a task
(``negrec sweep --ray ADDRESS``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal, Protocol

from negrec.errors import NegrecError
from negrec.experiment import rundir
from negrec.experiment.config import stored_run_config
from negrec.experiment.grid import Grid, GridRun, flatten

LOCK_NAME = ".sweep.lock"
Status = Literal["done", "todo", "stale", "conflict"]
Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- planning
@dataclass
class PlannedRun:
    """A grid run and what a sweep will do with it.

    ``done``: a complete run directory with the same config exists (skipped); ``todo``:
    nothing on disk yet; ``stale``: hidden staging directories of a killed attempt exist
    (removed, then the run is redone); ``conflict``: something else sits at the run's
    path (a finished run with a different config, or an incomplete directory).
    """

    run: GridRun
    path: Path
    status: Status
    detail: str = ""
    staging: list[Path] = field(default_factory=list)


def staging_dirs(folder: Path, name: str) -> list[Path]:
    """Hidden staging directories ``.{name}.tmp-*`` of run ``name`` in ``folder``."""
    if not folder.is_dir():
        return []
    prefix = f".{name}.tmp-"
    return sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.is_dir())


#: config keys naming a folder or file: two spellings of one place ("../shared/data" and
#: "/work/shared/data", from the working directory the sweep runs in) are the same value
FOLDER_KEYS = frozenset({"data.root", "data.path", "data.train", "data.test"})


def _same_folder(a: object, b: object) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def config_differences(path: Path, run: GridRun, limit: int = 3) -> list[str]:
    """Keys where the config stored in run directory ``path`` differs from ``run``'s
    (ignoring ``output``, ``train.device`` and the ``[logging]`` section, which do not
    change the experiment, and reading ``data.root`` as the folder it names).

    The stored config is read with this version's defaults filled in
    (:func:`negrec.experiment.config.stored_run_config`), so a finished sweep stays
    resumable when negrec gains a config key."""
    try:
        stored = stored_run_config(path, absolute=True)
    except NegrecError as err:
        return [f"its config no longer loads: {err}"]
    wanted = run.config.with_absolute_data()[0].to_toml_dict()  # as the runner stores it
    stored.pop("logging", None)
    wanted.pop("logging", None)
    ignored = {"output", "train.device"}
    old = {k: v for k, v in flatten(stored) if k not in ignored}
    new = {k: v for k, v in flatten(wanted) if k not in ignored}
    keys = [
        k
        for k in {**new, **old}
        if old.get(k, "<unset>") != new.get(k, "<unset>")
        and not (k in FOLDER_KEYS and _same_folder(old.get(k), new.get(k)))
    ]
    return [
        f"{k}: {old.get(k, '<unset>')!r} in the run, {new.get(k, '<unset>')!r} now"
        for k in keys[:limit]
    ] + ([f"... {len(keys) - limit} more"] if len(keys) > limit else [])


def plan_sweep(grid: Grid) -> list[PlannedRun]:
    """What a sweep of ``grid`` would do with each run, from what is on disk."""
    plans = []
    for run in grid.runs:
        path = grid.folder / run.name
        staging = staging_dirs(grid.folder, run.name)
        if path.exists():
            if not rundir.is_run_dir(path):
                plans.append(
                    PlannedRun(run, path, "conflict", "exists but is not a complete run directory")
                )
                continue
            diff = config_differences(path, run)
            if diff:
                plans.append(
                    PlannedRun(
                        run, path, "conflict", "finished with another config: " + "; ".join(diff)
                    )
                )
            else:
                plans.append(PlannedRun(run, path, "done", staging=staging))
        elif staging:
            plans.append(PlannedRun(run, path, "stale", "a killed attempt left", staging))
        else:
            plans.append(PlannedRun(run, path, "todo"))
    return plans


def check_conflicts(plans: list[PlannedRun]) -> None:
    """Raise NegrecError naming the runs in conflict, if any (nothing has started)."""
    conflicts = [p for p in plans if p.status == "conflict"]
    if not conflicts:
        return
    lines = [f"  {p.path}: {p.detail}" for p in conflicts[:5]]
    if len(conflicts) > 5:
        lines.append(f"  ... and {len(conflicts) - 5} more")
    raise NegrecError(
        f"{len(conflicts)} run(s) of this sweep cannot be resumed:\n"
        + "\n".join(lines)
        + "\ndelete those directories to redo the runs, or sweep into another --output"
    )


# ------------------------------------------------------------------------------ locking
@contextlib.contextmanager
def sweep_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep folder, or fail at once if another sweep
    holds it. The kernel releases it when the process dies (POSIX ``flock``); where
    ``fcntl`` does not exist (Windows) there is no lock."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NegrecError(
                f"{folder}: another sweep is running in this folder (it holds {LOCK_NAME})"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ workers
def worker_threads(workers: int) -> int:
    """Threads per worker: ``max(1, cores // workers)``, capped by ``OMP_NUM_THREADS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, workers))
    with contextlib.suppress(KeyError, ValueError):
        threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
    return threads


def _die_with_parent(parent: int) -> None:
    """End this worker when the sweep process dies, so no orphan keeps writing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(Exception):
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]


def _worker_main(conn: Connection, threads: int, parent: int) -> None:
    """A worker process: run the configs it is sent until it gets None.

    Replies ``("done", index, path, seconds)`` or ``("failed", index, message)``. Ctrl-C
    (SIGINT) ends it quietly: the run's staging directory is removed on the way out.
    """
    try:
        _die_with_parent(parent)
        _limit_threads(threads)
        from negrec.experiment.runner import run_experiment

        while True:
            task = conn.recv()
            if task is None:
                return
            index, config = task
            start = time.perf_counter()
            try:
                path = run_experiment(config, progress=False)
            except Exception as err:
                conn.send(("failed", index, failure_message(err)))
            else:
                conn.send(("done", index, str(path), time.perf_counter() - start))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


def failure_message(err: Exception) -> str:
    """How a failed run is reported: a NegrecError's own one-line message (bad input,
    config), the full traceback for anything else (a bug to report)."""
    if isinstance(err, NegrecError):
        return str(err)
    return "".join(traceback.format_exception(err)).rstrip()


@dataclass
class _Worker:
    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    index: int | None = None  # the run it holds


def _death(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"worker process {process.pid} was killed by {signal.Signals(-code).name}"
    return f"worker process {process.pid} exited with status {code}"


# -------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    """What a sweep did: finished now, skipped (finished before), failed (name -> why)."""

    folder: Path
    finished: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> list[Path]:
        """Run directories of the grid that are finished (now or before), by name."""
        return sorted(self.finished + self.skipped)


def _metric_line(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError, KeyError):
        summary = json.loads((path / "summary.json").read_text())
        metric = summary["selection_metric"]
        valid = summary.get("valid", {}).get(metric, math.nan)
        test = summary.get("test", {}).get(metric, math.nan)
        line = f"valid {metric} {valid:.4f}, test {metric} {test:.4f}"
        if summary.get("budget_bound"):
            line += (
                f" (best epoch {summary.get('best_epoch')} of {summary.get('last_epoch')}: "
                "budget-bound: raise train.epochs)"
            )
        return line
    return ""


def record_done(
    plan: PlannedRun,
    path: Path,
    seconds: float,
    result: SweepResult,
    log: Log,
    *,
    prefix: str = "",
    where: str = "",
) -> None:
    """Count a run finished (written to ``path`` in ``seconds``) and say so."""
    if path != plan.path:  # someone created plan.path meanwhile
        log(f"warning: {plan.run.name} was written to {path}, not {plan.path}")
    result.finished.append(path)
    log(f"{prefix}done   {plan.run.name} in {seconds:.1f} s{where}: {_metric_line(path)}")


def record_failed(plan: PlannedRun, why: str, result: SweepResult, log: Log) -> None:
    """Count a run failed (rerunning the sweep redoes it) and say why."""
    result.failed[plan.run.name] = why
    log(f"FAILED {plan.run.name}: {why}")


def interrupted_message(result: SweepResult, left: int, detail: str) -> str:
    """What an interrupted sweep leaves: ``left`` runs unfinished (``detail`` says more)."""
    return (
        f"interrupted: {len(result.finished)} run(s) finished in this session, "
        f"{left} left ({detail}); rerun the same command to resume"
    )


class Executor(Protocol):
    """What trains a sweep's unfinished runs; :func:`run_sweep` does the rest.

    ``execute`` trains each run of ``todo`` (``plan.run.config``, into ``plan.path``) and
    records it with :func:`record_done` or :func:`record_failed`; on Ctrl-C it stops what
    it started, logs :func:`interrupted_message` and re-raises KeyboardInterrupt.
    """

    def describe(self, todo: int) -> str:
        """How ``todo`` runs will be trained, for the sweep's first line."""
        ...

    def execute(self, todo: list[PlannedRun], result: SweepResult, log: Log) -> None: ...


@dataclass
class LocalExecutor:
    """Worker processes on this machine, ``workers`` at a time (see the module doc)."""

    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise NegrecError(f"--workers must be >= 1, got {self.workers}")

    def _shape(self, todo: int) -> tuple[int, int]:
        n_workers = min(self.workers, todo) or 1
        return n_workers, worker_threads(n_workers)

    def describe(self, todo: int) -> str:
        n_workers, threads = self._shape(todo)
        return f"{n_workers} worker(s), {threads} thread(s) each"

    def execute(self, todo: list[PlannedRun], result: SweepResult, log: Log) -> None:
        n_workers, threads = self._shape(len(todo))
        _execute(todo, n_workers, threads, result, log)


def run_sweep(
    grid: Grid,
    workers: int = 1,
    *,
    log: Log = _print,
    executor: Executor | None = None,
) -> SweepResult:
    """Run the unfinished runs of ``grid`` with ``workers`` worker processes, or with
    ``executor`` when given (e.g. a :class:`~negrec.experiment.ray_backend.RayExecutor`).

    Raises NegrecError before starting anything when a run's path holds something that
    is not this run (see :func:`plan_sweep`), or when another sweep holds the folder.
    Ctrl-C stops the workers and re-raises KeyboardInterrupt after saying what is left.
    """
    if executor is None:
        executor = LocalExecutor(workers)
    check_conflicts(plan_sweep(grid))
    result = SweepResult(grid.folder)
    with sweep_lock(grid.folder):
        plans = plan_sweep(grid)  # again, under the lock
        check_conflicts(plans)
        for plan in plans:
            for stale in plan.staging:  # killed attempts: nobody else can be writing them
                shutil.rmtree(stale, ignore_errors=True)
        result.skipped = [p.path for p in plans if p.status == "done"]
        todo = [p for p in plans if p.status in ("todo", "stale")]
        redo = sum(p.status == "stale" for p in plans)
        log(
            f"sweep {grid.name}: {len(plans)} runs in {grid.folder}: "
            f"{len(result.skipped)} finished before, {len(todo)} to run"
            + (f" ({redo} redone after a killed attempt)" if redo else "")
            + (f"; {executor.describe(len(todo))}" if todo else "")
        )
        if todo:
            executor.execute(todo, result, log)
    n_failed = len(result.failed)
    log(
        f"sweep {grid.name}: {len(result.complete)} of {len(grid.runs)} runs complete"
        + (f", {n_failed} failed (rerun the same command to retry them)" if n_failed else "")
    )
    return result


def _execute(
    todo: list[PlannedRun], n_workers: int, threads: int, result: SweepResult, log: Log
) -> None:
    ctx = get_context("spawn")
    pending = deque(range(len(todo)))
    workers: list[_Worker] = []
    total, counter = len(todo), 0

    def start_worker() -> _Worker:
        parent_conn, child_conn = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main,
            args=(child_conn, threads, os.getpid()),
            name="negrec-sweep-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()
        worker = _Worker(process, parent_conn)
        workers.append(worker)
        return worker

    def retire(worker: _Worker) -> None:
        workers.remove(worker)
        worker.conn.close()
        worker.process.join(timeout=5)

    try:
        while pending or any(w.index is not None for w in workers):
            for worker in [w for w in workers if w.index is None and not w.process.is_alive()]:
                retire(worker)
            while pending and (any(w.index is None for w in workers) or len(workers) < n_workers):
                idle = [w for w in workers if w.index is None]
                worker = idle[0] if idle else start_worker()
                i = pending.popleft()
                counter += 1
                name, pid = todo[i].run.name, worker.process.pid
                try:
                    worker.conn.send((i, todo[i].run.config))
                except OSError:  # the worker died before taking it: fail the run, go on
                    worker.process.join(timeout=5)
                    result.failed[name] = _death(worker.process)
                    log(f"FAILED {name}: {result.failed[name]}")
                    retire(worker)
                    continue
                worker.index = i
                log(f"[{counter}/{total}] start  {name} (worker pid {pid})")
            busy = [w for w in workers if w.index is not None]
            if not busy:  # every send just failed: wait([]) would block forever
                continue
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                plan = todo[worker.index]  # type: ignore[index]
                message: Any = None
                with contextlib.suppress(EOFError, OSError):
                    if worker.conn.poll():
                        message = worker.conn.recv()
                if message is None:
                    if worker.process.is_alive():
                        continue
                    worker.process.join()
                    record_failed(plan, _death(worker.process), result, log)
                    worker.index = None
                    retire(worker)
                    continue
                worker.index = None
                if message[0] == "done":
                    seconds = float(message[3])  # in the worker: without its start-up
                    record_done(plan, Path(message[2]), seconds, result, log)
                else:
                    record_failed(plan, message[2], result, log)
        for worker in list(workers):  # done: they exit on their own, no need to wait
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            workers.remove(worker)
            worker.conn.close()
    except KeyboardInterrupt:
        running = [todo[w.index].run.name for w in workers if w.index is not None]
        _stop(workers)
        stopped = f"{', '.join(running) or 'none'} stopped mid-run"
        log(interrupted_message(result, len(pending) + len(running), stopped))
        raise
    finally:
        for worker in workers:  # only after an unexpected error: never leave them running
            with contextlib.suppress(Exception):
                worker.process.kill()


def _stop(workers: list[_Worker]) -> None:
    """Stop the workers after Ctrl-C: give them a moment to clean up after the SIGINT the
    terminal sent them, then send one (in case only this process got it), then kill."""
    live = [w for w in workers if w.process.is_alive()]
    _join_all(live, 2.0)
    for worker in live:
        if worker.process.is_alive() and worker.process.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(worker.process.pid, signal.SIGINT)
    _join_all(live, 10.0)
    for worker in live:
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)


def _join_all(workers: list[_Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))

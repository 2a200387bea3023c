"""Sweeps on a Ray cluster: ``negrec sweep CONFIG --ray ADDRESS``.

:class:`RayExecutor` is an :class:`~negrec.experiment.sweep.Executor`: the sweep plans,
locks its folder, skips finished runs, removes killed attempts and reports exactly as a
local sweep does (:func:`~negrec.experiment.sweep.run_sweep`); only the training of the
unfinished runs is different. Each run becomes one Ray task that gets the run's config
as a plain dict (``to_toml_dict``), the sweep's working directory and ``$NEGREC_CACHE``,
and calls :func:`~negrec.experiment.runner.run_experiment` on whichever node Ray picks.

``ADDRESS`` is anything ``ray.init`` accepts: ``auto`` (the cluster this machine belongs
to, e.g. after ``ray start``), ``HOST:PORT`` (a cluster's GCS address, from a node of
it), ``ray://HOST:10001`` (Ray Client, from outside the cluster), or ``local`` (start a
private Ray instance on this machine for the length of the sweep).

Shared filesystem: a task writes its run directory where a local sweep would, so every
node must see the sweep folder, the data files and the dataset cache at the same paths as
the machine running ``negrec sweep`` (an NFS home, a cluster filesystem). Tasks change
into the sweep's working directory, so relative paths in the config mean the same there;
a node where it does not exist fails the run, saying so. Nodes need negrec (same
version) and its dependencies installed.

Resources: each task asks Ray for ``cpus_per_run`` CPUs (``--ray-cpus-per-run``, default
1) and uses that many threads; Ray runs as many at once as the cluster has room for.

Resuming: as for a local sweep. Run directories appear by atomic rename, so a task killed
with its node leaves only a hidden staging directory, removed by the next sweep. Ray
retries a task once when its worker or node dies (a retry that finds the run already
written reports it, never writes it twice); application errors are not retried. Ctrl-C
cancels the tasks (running ones get KeyboardInterrupt and remove their staging
directories); if the sweep process dies, Ray ends the job's tasks with it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from negrec.errors import NegrecError
from negrec.experiment import rundir
from negrec.experiment.sweep import (
    Log,
    PlannedRun,
    SweepResult,
    _limit_threads,
    failure_message,
    interrupted_message,
    record_done,
    record_failed,
)

INSTALL_HINT = "pip install 'negrec[ray]'"
#: Ray retries a task this many times when its worker process or node dies.
MAX_RETRIES = 1
#: Seconds to wait for cancelled tasks to clean up after Ctrl-C.
CANCEL_WAIT = 10.0
#: Seconds to wait for a TCP connection to HOST:PORT before asking Ray to connect.
REACH_TIMEOUT = 10.0


def import_ray() -> ModuleType:
    """The ``ray`` module, or a one-line NegrecError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise NegrecError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------------------- the task
def run_task(
    config: dict[str, Any], cwd: str, env: dict[str, str], threads: int
) -> tuple[Any, ...]:
    """Train one run on a Ray worker: ``("done", path, seconds, host)`` or
    ``("failed", message, host)``, like a local sweep worker's replies."""
    host = socket.gethostname()
    try:
        os.chdir(cwd)
    except OSError:
        return (
            "failed",
            f"the sweep's working directory {cwd} does not exist on node {host}: "
            "--ray needs a filesystem shared by all nodes, at the same paths",
            host,
        )
    os.environ.update(env)
    try:
        from negrec.experiment.config import ExperimentConfig
        from negrec.experiment.runner import run_experiment

        _limit_threads(threads)
        start = time.perf_counter()  # as a local worker reports it: without the imports
        parsed = ExperimentConfig.from_dict(config)
        final = Path(parsed.output) / parsed.name
        if rundir.is_run_dir(final):  # a retry, after the attempt that wrote it was lost
            return ("done", str(final), 0.0, host)
        path = run_experiment(parsed, progress=False)
    except Exception as err:
        return ("failed", failure_message(err), host)
    return ("done", str(path), time.perf_counter() - start, host)


def _task_env() -> dict[str, str]:
    """Environment the tasks need to find what this process finds: the dataset cache."""
    from negrec.data.cache import CACHE_ENV, cache_root

    return {CACHE_ENV: str(cache_root().resolve())}


def check_reachable(address: str | None, timeout: float = REACH_TIMEOUT) -> None:
    """For a ``HOST:PORT`` or ``ray://HOST:PORT`` address, NegrecError unless something
    accepts a TCP connection there: ``ray.init`` retries an address where nothing listens
    for many minutes before giving up. Other addresses (``auto``, ``local``) pass."""
    if not address:
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise NegrecError(
            f"--ray {address}: nothing accepts connections at {hostport} ({err}); "
            "is the Ray cluster up, and is this its address?"
        ) from None


# ------------------------------------------------------------------------ the executor
@dataclass
class RayExecutor:
    """Train a sweep's runs as Ray tasks on the cluster at ``address``.

    ``address`` is passed to ``ray.init`` (``"local"`` starts a private instance; None
    uses the connection this process already has, or Ray's default). If this process is
    already connected, that connection is used and left open; otherwise the executor
    connects for the sweep and disconnects after it.
    """

    address: str | None = "auto"
    cpus_per_run: float = 1.0

    def __post_init__(self) -> None:
        if not self.cpus_per_run > 0:
            raise NegrecError(f"--ray-cpus-per-run must be > 0, got {self.cpus_per_run}")

    @property
    def threads(self) -> int:
        """Threads per run: the CPUs it asked for (at least one)."""
        return max(1, math.floor(self.cpus_per_run))

    def describe(self, todo: int) -> str:
        where = self.address or "the current Ray connection"
        return f"Ray tasks on {where}, {self.cpus_per_run:g} CPU(s) each"

    def _connect(self, ray: ModuleType) -> None:
        kwargs: dict[str, Any] = {"address": self.address}
        if self.address == "local":
            kwargs["include_dashboard"] = False
        # ray.init installs a C-level handler for SIGTERM that aborts the process; put
        # back the Python handlers (the sweep command turns SIGTERM into a clean stop)
        check_reachable(self.address)
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            ray.init(**kwargs)
        except Exception as err:
            lines = str(err).strip().splitlines() or [type(err).__name__]
            raise NegrecError(f"--ray {self.address}: cannot connect to Ray: {lines[0]}") from None
        finally:
            for sig, handler in handlers.items():
                if handler is not None:
                    with contextlib.suppress(ValueError):  # not the main thread
                        signal.signal(sig, handler)

    def execute(self, todo: list[PlannedRun], result: SweepResult, log: Log) -> None:
        ray = import_ray()
        owned = not ray.is_initialized()
        if owned:
            self._connect(ray)
        try:
            self._run(ray, todo, result, log)
        finally:
            if owned:
                ray.shutdown()

    def _run(self, ray: ModuleType, todo: list[PlannedRun], result: SweepResult, log: Log) -> None:
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        log(f"ray: {nodes} node(s), {cpus:g} CPU(s); submitting {len(todo)} task(s)")
        if cpus < self.cpus_per_run:
            log(
                f"warning: each run asks for {self.cpus_per_run:g} CPU(s) but the cluster has "
                f"{cpus:g}: the tasks wait until it grows (or lower --ray-cpus-per-run)"
            )
        task = ray.remote(run_task)
        cwd, env = os.getcwd(), _task_env()
        refs: dict[Any, PlannedRun] = {}
        pending: list[Any] = []
        total, counter = len(todo), 0
        try:
            for plan in todo:
                ref = task.options(
                    num_cpus=self.cpus_per_run,
                    max_retries=MAX_RETRIES,
                    name=f"negrec-sweep:{plan.run.name}",
                ).remote(plan.run.config.to_toml_dict(), cwd, env, self.threads)
                refs[ref] = plan
                pending.append(ref)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    counter += 1
                    self._record(ray, ref, refs[ref], f"[{counter}/{total}] ", result, log)
        except KeyboardInterrupt:
            for ref in pending:  # running tasks get KeyboardInterrupt: staging removed
                ray.cancel(ref)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT)
            log(interrupted_message(result, total - counter, "their Ray tasks cancelled"))
            raise

    @staticmethod
    def _record(
        ray: ModuleType, ref: Any, plan: PlannedRun, prefix: str, result: SweepResult, log: Log
    ) -> None:
        try:
            message = ray.get(ref)
        except ray.exceptions.RayError as err:  # the worker or node died, or Ray failed
            record_failed(plan, f"Ray task failed: {str(err).strip()}", result, log)
            return
        if message[0] == "done":
            _, path, seconds, host = message
            where = f" on {host}"
            record_done(plan, Path(path), float(seconds), result, log, prefix=prefix, where=where)
        else:
            record_failed(plan, f"{message[1]} (on {message[2]})", result, log)

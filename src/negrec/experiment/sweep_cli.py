"""``negrec sweep CONFIG``: expand a grid config and run it locally, resumably.

    negrec sweep loss-theory --set data.root=/data --workers 2
    negrec sweep my-grid.toml --set 'grid.seeds=[0, 1]' --dry-run
    negrec sweep loss-theory --ray auto --ray-cpus-per-run 4   # on a Ray cluster

Interrupted (Ctrl-C, a killed worker, a lost machine)? Run the same command again:
finished runs are skipped and killed ones redone (see :mod:`negrec.experiment.sweep`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from negrec.argtypes import positive_int

if TYPE_CHECKING:
    from negrec.experiment.sweep import Executor

SWEEP_HELP = """\
A grid is a config with a [grid] table: dotted config paths with lists of values
(cartesian product), optional [[grid.runs]] entries (explicit combinations, each
crossed with the product) and grid.seeds. Example:

  [grid]
  seeds = [0, 1, 2]
  loss.name = ["bpr", "cce"]
  sampler.k = [1, 8, 32]

Runs go to {output}/{name}/ of the config (or --output), one directory per run, named
after its values, e.g. loss=cce,sampler.k=8,seed=1. Rerunning the same command resumes:
finished runs are skipped, runs killed mid-way are redone. The sweep ends with a table
aggregated over seeds (mean ± std, paired t-test of the best against the runner-up),
also written to report.md / report.tex with plots in the sweep folder.

Presets: simce, hns, loss-theory (negrec presets). They read LightGCN-format
train.txt / test.txt files under data.root: --set data.root=/path/to/datasets, or
--set data.train=... --set data.test=... for another dataset. To tune them on any
dataset instead: negrec reproduce PAPER --dataset NAME (negrec tune for your own space).
"""


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``negrec sweep``."""
    sweep = subparsers.add_parser(
        "sweep",
        help="run a grid of configs in parallel worker processes or on Ray (resumable)",
        description="Expand the [grid] of a config (file or preset) into runs and train\n"
        "them with worker processes on this machine, or as tasks on a Ray cluster (--ray).\n"
        "Rerun the same command to resume.",
        epilog=SWEEP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("config", help="a TOML config file with a [grid] table, or a preset name")
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base value (--set train.epochs=5) or the grid itself "
        "(--set 'grid.seeds=[0, 1]'); a value the grid varies cannot be --set",
    )
    sweep.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="runs trained at once, one process each (default 1); each gets "
        "max(1, cores // N) threads",
    )
    sweep.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="train the runs as tasks on a Ray cluster instead: auto, HOST:PORT, "
        "ray://HOST:10001, or local (a private instance on this machine); needs a "
        "filesystem shared by all nodes (pip install 'negrec[ray]')",
    )
    sweep.add_argument(
        "--ray-cpus-per-run",
        type=_positive_float,
        default=None,
        metavar="N",
        help="CPUs each Ray task asks for, and threads it uses (default 1)",
    )
    sweep.add_argument(
        "--output",
        metavar="DIR",
        help="folder of the run directories (default: {output}/{name} of the config)",
    )
    sweep.add_argument(
        "--dry-run",
        action="store_true",
        help="list the expanded runs and what a sweep would do with each; run nothing",
    )
    sweep.set_defaults(func=sweep_command)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _executor(args: argparse.Namespace) -> Executor | None:
    """The sweep's executor from --workers / --ray / --ray-cpus-per-run (None: local)."""
    from negrec.errors import NegrecError

    if args.ray is None:
        if args.ray_cpus_per_run is not None:
            raise NegrecError("--ray-cpus-per-run needs --ray ADDRESS")
        return None
    if args.workers is not None:
        raise NegrecError(
            "--workers and --ray do not go together: with --ray, the cluster's CPUs and "
            "--ray-cpus-per-run decide how many runs train at once"
        )
    from negrec.experiment.ray_backend import RayExecutor, import_ray

    import_ray()  # fail now, before anything, when Ray is not installed
    cpus = 1.0 if args.ray_cpus_per_run is None else args.ray_cpus_per_run
    return RayExecutor(args.ray, cpus)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``) stops a sweep like Ctrl-C does: cleanly."""

    def handler(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sweep_command(args: argparse.Namespace) -> int:
    """``negrec sweep``: dry run, or run and end with the aggregated table."""
    from negrec.experiment.grid import load_grid
    from negrec.experiment.sweep import plan_sweep, run_sweep

    executor = _executor(args)
    grid = load_grid(args.config, args.set, folder=args.output)
    if args.dry_run:
        plans = plan_sweep(grid)
        print(f"sweep {grid.name}: {len(plans)} runs in {grid.folder}")
        width = max(len(p.run.name) for p in plans)
        for plan in plans:
            detail = f"  ({plan.detail})" if plan.detail else ""
            print(f"  {plan.status:<8} {plan.run.name:<{width}}{detail}".rstrip())
        counts = {s: sum(p.status == s for p in plans) for s in ("done", "todo", "stale")}
        conflicts = len(plans) - sum(counts.values())
        print(
            f"{counts['done']} finished, {counts['todo'] + counts['stale']} to run"
            + (f", {conflicts} in conflict (the sweep would stop)" if conflicts else "")
        )
        return 0
    with _sigterm_as_interrupt():
        result = run_sweep(grid, args.workers or 1, executor=executor)
    if result.complete:
        from negrec.experiment.aggregate import write_report
        from negrec.experiment.report import load_runs

        report = write_report(load_runs(result.complete), grid.folder)
        print()
        print(report.markdown)
        print("report: " + ", ".join(str(p) for p in report.files))
    if result.failed:
        print(f"{len(result.failed)} run(s) failed:", file=sys.stderr)
        for name, why in result.failed.items():
            print(f"  {name}: {why.splitlines()[-1] if why else ''}", file=sys.stderr)
        return 1
    return 0

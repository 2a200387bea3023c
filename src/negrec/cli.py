"""The ``negrec`` command: thin commands over negrec.experiment, negrec.data, negrec.theory.

Errors caused by input (files, configs, arguments) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from negrec.argtypes import seed as seed_type
from negrec.errors import NegrecError

if TYPE_CHECKING:
    from negrec.distributed import World

# Modules whose ``add_commands(subparsers)`` adds their sub-commands to ``negrec``.
COMMAND_MODULES = (
    "negrec.data.cli",
    "negrec.theory.cli",
    "negrec.hardness_cli",
    "negrec.experiment.sweep_cli",
    "negrec.recommend_cli",
    "negrec.experiment.tune_cli",
)


def _rank(args: argparse.Namespace) -> int:
    """This process's rank: 0 without ``--distributed``; with it, a one-line error (exit 2)
    unless torchrun started the process."""
    if not args.distributed:
        return 0
    from negrec.distributed import torchrun_rank

    return torchrun_rank()[0]


def _world(args: argparse.Namespace, device: str) -> AbstractContextManager[World]:
    """torchrun's process group for ``--distributed`` (gloo, or nccl when ``device`` is a
    GPU), else the single process."""
    from negrec.distributed import LOCAL, launched

    return launched(device) if args.distributed else nullcontext(LOCAL)


def _run(args: argparse.Namespace) -> int:
    from negrec.experiment.config import load_config
    from negrec.experiment.report import comparison_table, load_runs, plot_curves
    from negrec.experiment.rundir import orphan_staging
    from negrec.experiment.runner import default_comparison, run_experiment

    rank = _rank(args)
    if args.resume is not None:
        return _resume(args)
    if args.config is None and not args.set:
        configs = default_comparison(args.output or "runs", seed=args.seed)
        if rank == 0:
            print(
                "negrec: comparing BPR, BCE, CCE and SimCE with MF on the built-in synthetic "
                "dataset (943 users x 1,682 items); pass a CONFIG to run your own.",
                file=sys.stderr,
            )
    else:
        config = load_config(args.config, args.set)
        if args.output:
            config = config.replace(output=args.output)
        configs = [config]
        if rank == 0:
            for orphan in orphan_staging(Path(config.output), config.name):
                print(
                    f"negrec: note: {orphan} is left by a run killed before its first "
                    f"checkpoint (no checkpoint, nothing to resume); unless a run is still "
                    f"starting there, delete it: rm -r {orphan}",
                    file=sys.stderr,
                )
    with _world(args, configs[0].train.device) as world:
        paths = [run_experiment(c, progress=not args.quiet, world=world) for c in configs]
    if not world.is_main:  # rank 0 reports
        return 0
    runs = load_runs(paths)
    print(comparison_table(runs))
    metric = configs[0].train.metric
    # one run: named after it (single runs share their output folder); a comparison has
    # its own folder
    stem = f"{paths[0].name}-" if len(paths) == 1 else ""
    plot = plot_curves(runs, metric, paths[0].parent / f"{stem}valid-{metric}.png")
    print(f"\nruns: {', '.join(str(p) for p in paths)}\nplot: {plot}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    """Continue an interrupted run from its last checkpoint, then finish it as usual."""
    from negrec.errors import ConfigError
    from negrec.experiment.config import (
        ExperimentConfig,
        apply_overrides,
        parse_override,
        read_toml,
    )
    from negrec.experiment.report import comparison_table, load_runs
    from negrec.experiment.rundir import find_resumable
    from negrec.experiment.runner import RESUME_KEYS, run_experiment

    if args.config is not None or args.output:
        raise NegrecError(
            "--resume takes no CONFIG or --output: the run keeps its own config and folder"
        )
    changes: dict[str, object] = {}
    for text in args.set:
        keys, value = parse_override(text)
        key = ".".join(keys)
        if key not in RESUME_KEYS:
            raise ConfigError(
                key,
                "cannot change when resuming (the run so far was trained with it); "
                f"--resume takes --set for {', '.join(RESUME_KEYS)} only",
            )
        changes[key] = value
    staging = find_resumable(Path(args.resume))
    raw = apply_overrides(read_toml(staging / "config.toml"), list(args.set))
    config = ExperimentConfig.from_dict(raw)
    with _world(args, config.train.device) as world:
        path = run_experiment(
            config,
            progress=not args.quiet,
            resume_dir=staging,
            resumed_with=changes or None,
            world=world,
        )
    if not world.is_main:  # rank 0 reports
        return 0
    print(comparison_table(load_runs([path])))
    print(f"\nrun: {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from negrec.experiment.report import (
        comparison_table,
        has_bound_monitor,
        load_runs,
        plot_bound_monitor,
        plot_curves,
    )

    runs = load_runs(args.runs)
    print(comparison_table(runs))
    bound_runs = [r.name for r in runs if r.summary.get("budget_bound")]
    if bound_runs:
        print(
            f"\n{len(bound_runs)} run(s) ended on their epoch budget while still improving "
            f"({', '.join(bound_runs)}): budget-bound: raise train.epochs"
        )
    metric = args.metric or runs[0].summary.get("selection_metric", "ndcg@20")
    columns = {c for r in runs for c in r.history.columns}
    if f"valid/{metric}" not in columns:
        known = sorted(c.removeprefix("valid/") for c in columns if c.startswith("valid/"))
        raise NegrecError(
            f"--metric {metric}: no run has it per epoch (they have: {', '.join(known)})"
        )
    stem = _report_stem(args.runs)
    default_plot = Path(args.runs[0]).parent / f"{stem}-valid-{metric}.png"
    plot = plot_curves(runs, metric, args.plot or default_plot)
    print(f"\nplot: {plot}")
    plots = [plot]
    if has_bound_monitor(runs):  # runs made with [monitor] enabled = true
        bound = plot_bound_monitor(runs, Path(plot).parent / f"{stem}-bound-monitor.png")
        plots.append(bound)
        print(f"bound monitor plot: {bound}")
    from negrec.experiment.aggregate import seeds_repeat, write_report
    from negrec.experiment.report_html import report_plots, write_html

    report = None
    if seeds_repeat(runs):  # some config ran with several seeds: mean +- std, t-test
        report = write_report(runs, Path(plot).parent, metric, prefix=f"{stem}-")
        plots += report_plots(report.files)
        print(f"\naggregated over seeds:\n\n{report.markdown}")
        print("report: " + ", ".join(str(p) for p in report.files))
    page = write_html(args.html or Path(plot).parent / f"{stem}-report.html", runs, plots, report)
    print(f"html: {page}")
    return 0


def _report_stem(paths: Sequence[str]) -> str:
    """The start of the names of a report's files, from the folders given: ``NAME`` for
    one, ``NAME-and-N-more-HASH`` for several (HASH: 6 hex digits of the set of folders,
    so ``report a b`` and ``report a c`` differ); reports of other runs written to one
    folder do not overwrite each other."""
    import hashlib

    resolved = [Path(p).resolve() for p in paths]
    names = [p.name or "runs" for p in resolved]
    if len(names) == 1:
        return names[0]
    digest = hashlib.sha1("\n".join(sorted(map(str, set(resolved)))).encode()).hexdigest()
    return f"{names[0]}-and-{len(names) - 1}-more-{digest[:6]}"


def _presets(args: argparse.Namespace) -> int:
    from importlib import resources

    from negrec.experiment.config import preset_names

    names = preset_names()
    if args.name is None:
        for name in names:
            print(name)
        return 0
    if args.name not in names:
        raise NegrecError(f"no preset named {args.name!r}; presets: {', '.join(names)}")
    preset = resources.files("negrec") / "presets" / f"{args.name}.toml"
    print(preset.read_text(encoding="utf-8"), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="negrec",
        description="Train and evaluate recommenders under negative sampling.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="train one config, or (no CONFIG) compare the core losses on built-in data",
        description="Train a model, select the epoch on validation, test once, and write a "
        "run directory OUTPUT/NAME (NAME-2, NAME-3, ... when a finished run already has "
        "the name; a run is never overwritten). Prints one line of what preparing the data "
        "dropped and kept. With no CONFIG: MF with BPR, BCE, CCE and SimCE on the built-in "
        "synthetic dataset, ending in a comparison table and a plot.",
    )
    run.add_argument("config", nargs="?", help="a TOML config file or a preset name")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set loss.name=cce --set sampler.k=16; with "
        "--resume only train.lr, train.lr_decay, train.lr_decay_every, train.epochs and "
        "train.patience (recorded in the run's history)",
    )
    run.add_argument("--output", help="parent directory of the run directories (default: runs)")
    run.add_argument("--seed", type=seed_type, default=0, help="seed of the default comparison")
    run.add_argument(
        "--quiet", action="store_true", help="no progress bars, no progress or data line"
    )
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint: its hidden staging "
        "directory (printed when it started) or OUTPUT/NAME; after a divergence add e.g. "
        "--set train.lr=0.0001",
    )
    run.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training over the ranks torchrun starts: "
        "torchrun --nproc-per-node N -m negrec.cli run CONFIG --distributed "
        "(gloo on CPU, nccl on GPUs; rank 0 writes the run directory)",
    )
    run.set_defaults(func=_run)

    report = commands.add_parser(
        "report",
        help="comparison table and validation-curve plot for run directories",
        description="Print a markdown comparison table and write a PNG of the validation "
        "metric per epoch for the given run directories (or directories holding runs); when "
        "configs repeat over seeds, also mean +- std tables and a paired t-test. Everything "
        "is gathered in one self-contained HTML page (--html).",
    )
    report.add_argument("runs", nargs="+", help="run directories, or folders of them")
    report.add_argument(
        "--metric", help="validation metric to plot (default: the selection metric)"
    )
    report.add_argument(
        "--plot",
        help="PNG path (default: STEM-valid-METRIC.png beside the first folder given, STEM "
        "being its name, or NAME-and-N-more-HASH for several)",
    )
    report.add_argument(
        "--html",
        help="path of the self-contained HTML page with every table, plot and config "
        "(default: STEM-report.html beside the plot)",
    )
    report.set_defaults(func=_report)

    presets = commands.add_parser(
        "presets",
        help="list the configs shipped with negrec, or print one",
        description="Without NAME: the names of the configs shipped with negrec (`negrec "
        "run NAME` runs one). With NAME: that config's TOML, to read or to copy and edit.",
    )
    presets.add_argument("name", nargs="?", metavar="NAME", help="print this preset's TOML")
    presets.set_defaults(func=_presets)

    # Each module registers its own sub-commands. A module that fails to import is an
    # error, not a missing command: the ImportError propagates with its traceback.
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NegrecError as err:
        print(f"negrec: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("negrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except OSError as err:  # a path the user gave that cannot be used: one line, not a trace
        if err.filename is None:
            raise
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else f"{err.filename}"
        print(f"negrec: error: {where}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

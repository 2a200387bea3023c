"""``negrec tune CONFIG`` and ``negrec reproduce PAPER --dataset NAME``.

    negrec tune my-space.toml --set data.root=/data
    negrec tune simce --set tune.trials=5 --no-confirm
    negrec reproduce simce --dataset /data/ml-1m --budget small --seeds 3

Interrupted? Run the same command again: finished trials and confirm runs are kept.
"""

from __future__ import annotations

import argparse

from negrec.argtypes import positive_int

TUNE_HELP = """\
A tuning plan is a config with a [tune] table; every trial is a run of that config
with values drawn from the search space, selected on validation only:

  [tune]
  trials = 20                  # finished trials per study
  seeds = [0, 1, 2]            # confirm stage: the best trial, once per seed
  pruner = "median"            # or "none"

  [tune.space]
  "train.lr" = { low = 1e-4, high = 1e-2, log = true }
  "sampler.k" = { choices = [1, 4, 16] }
  "model.dim" = { low = 16, high = 128, step = 16 }

  [tune.grid]                  # optional: one study per value, tuned alike
  "loss.name" = ["bpr", "cce"]

Stage 1 (Optuna, TPE sampler, median pruning) keeps its studies in
{output}/tune-{name}/study.db and never reads the test split; stage 2 trains each study's
best trial with every confirm seed into {output}/tune-{name}/confirm/ and writes tune.md
(mean ± std, paired t-test). Rerunning the same command resumes both stages.
For fixed grids (also on a Ray cluster) see `negrec sweep`.
"""

REPRODUCE_HELP = """\
Papers: simce (BPR, SSM, SimCE; K and margin, lr, L2 tuned), hns (BPR with uniform
negatives, DNS(M, N), Softmax-v(rho, N); M, rho, lr, L2 tuned), loss-theory (BPR, BCE,
CCE at K in 1, 5, 10, 20, 100; lr and L2 tuned). --dataset is a prepared dataset
(`negrec data fetch NAME`) or a folder with train.txt and test.txt. The report
(reproduce.md) sets the paper's published figures beside ours where the paper has the
dataset, "—" otherwise. Budget small: few trials (a first look); full: the plan's trials.
"""


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config or plan value, e.g. --set tune.trials=5 --set train.epochs=100",
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``negrec tune`` and ``negrec reproduce``."""
    tune = subparsers.add_parser(
        "tune",
        help="search hyperparameters on validation (Optuna), then confirm the best with seeds",
        description="Tune a config's [tune] search space on validation with Optuna, then "
        "train each study's best trial with several seeds and report mean ± std. Resumable.",
        epilog=TUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("config", help="a TOML config file with a [tune] table, or a preset name")
    _overrides(tune)
    tune.add_argument(
        "--output", metavar="DIR", help="folder of the studies (default: {output}/tune-{name})"
    )
    tune.add_argument(
        "--no-confirm", action="store_true", help="stop after the tuning stage (no test read)"
    )
    tune.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="confirm runs trained at once, one process each (default: 1, in this process)",
    )
    tune.set_defaults(func=tune_command)

    reproduce = subparsers.add_parser(
        "reproduce",
        help="a paper's comparison on any dataset: tune every family, confirm, compare",
        description="Run a paper's preset on DATASET: tune each family on validation, "
        "confirm the best with several seeds, and compare with the published figures.",
        epilog=REPRODUCE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reproduce.add_argument("paper", choices=["simce", "hns", "loss-theory"])
    reproduce.add_argument(
        "--dataset",
        required=True,
        help="a prepared dataset name, or a folder with train.txt/test.txt",
    )
    reproduce.add_argument("--budget", choices=["small", "full"], default="small")
    reproduce.add_argument(
        "--seeds", type=positive_int, default=None, help="confirm seeds (default: the plan's)"
    )
    reproduce.add_argument("--output", metavar="DIR", help="default: runs/reproduce/PAPER-DATASET")
    reproduce.add_argument("--workers", type=positive_int, default=1, metavar="N")
    _overrides(reproduce)
    reproduce.set_defaults(func=reproduce_command)


def tune_command(args: argparse.Namespace) -> int:
    from negrec.experiment.sweep_cli import _sigterm_as_interrupt
    from negrec.experiment.tune import run_tune
    from negrec.experiment.tune_plan import load_plan

    plan = load_plan(args.config, args.set, folder=args.output)
    with _sigterm_as_interrupt():
        text, files = run_tune(plan, confirm=not args.no_confirm, workers=args.workers)
    print()
    print(text)
    if files:
        print("report: " + ", ".join(str(p) for p in files))
    return 0


def reproduce_command(args: argparse.Namespace) -> int:
    from negrec.experiment.reproduce import reproduce
    from negrec.experiment.sweep_cli import _sigterm_as_interrupt

    with _sigterm_as_interrupt():
        text, path = reproduce(
            args.paper,
            args.dataset,
            budget=args.budget,
            seeds=args.seeds,
            output=args.output,
            overrides=args.set,
            workers=args.workers,
        )
    print()
    print(text)
    print(f"report: {path}")
    return 0

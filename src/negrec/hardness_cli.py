"""The ``negrec hardness`` command: a sampler's hardness under a trained run's model.

``negrec hardness RUN_DIR [--sampler NAME] [--set sampler.KEY=VALUE ...] [--users 500]
[--draws 4] [--seed 0] [--ranks 1,5,10,...] [--out DIR] [--device cpu]`` loads the run's
``config.toml`` and ``best.pt``, rebuilds its split (stored in the run) and model, draws
negatives with the given sampler (default: the run's own) for sampled validation users,
and prints the cumulative probability of drawing a top-r negative against uniform sampling, with the
implied beta of OPAUC(beta) (see :mod:`negrec.hardness`; Figure 7 of Shi et al., WWW 2023),
and how much of the drawn weight falls on the user's validation and test items (false
negatives: positives the sampler cannot know of), against uniform draws. It writes
``hardness-<label>.png`` and ``hardness-<label>.csv`` (atomically) to ``--out``, by default
the run directory. Bad input raises :class:`negrec.errors.NegrecError`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from negrec.argtypes import seed as seed_type
from negrec.config_base import to_dict
from negrec.errors import ConfigError, NegrecError

DEFAULT_USERS = 500


def add_commands(subparsers: Any) -> None:
    """Register ``hardness`` on the ``negrec`` sub-command parser."""
    p = subparsers.add_parser(
        "hardness",
        help="sampling distribution of a sampler over a trained run's score ranks",
        description="For a run directory and a sampler config: the probability that a drawn "
        "negative is among the user's top-r negatives by the run's model, against uniform "
        "sampling (Figure 7 of Shi et al., WWW 2023), the implied beta of OPAUC(beta), and "
        "the share of drawn negatives that are the user's validation or test items (false "
        "negatives). Prints a table; writes a PNG and a CSV.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="a run directory (config.toml and best.pt)")
    p.add_argument("--sampler", help="sampler name (default: the run's sampler and options)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="sampler.KEY=VALUE",
        help="sampler option, e.g. --set sampler.pool=200 --set sampler.k=5",
    )
    p.add_argument(
        "--users",
        type=int,
        default=DEFAULT_USERS,
        help=f"validation users to sample (default {DEFAULT_USERS})",
    )
    p.add_argument("--draws", type=int, default=4, help="positives drawn per user (default 4)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of users, positives and sampler")
    p.add_argument("--ranks", help="comma-separated r of the table (default 1,5,10,50,100,...)")
    p.add_argument("--out", help="directory for the PNG and CSV (default: RUN_DIR)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.set_defaults(func=run_hardness)


def _parse_ranks(text: str | None) -> list[int] | None:
    if text is None:
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise NegrecError(f"--ranks must be comma-separated integers, got '{part}'") from None
        if value < 1:
            raise NegrecError(f"--ranks must be >= 1, got {value}")
        out.append(value)
    if not out:
        raise NegrecError("--ranks must list at least one rank")
    return sorted(set(out))


def sampler_options(
    run_section: dict[str, Any], name: str | None, sets: list[str]
) -> dict[str, Any]:
    """The raw ``[sampler]`` table: the run's own (no ``name``) or a fresh one, plus sets."""
    from negrec.experiment.config import apply_overrides, parse_override

    raw: dict[str, Any] = dict(run_section) if name is None else {"name": name}
    keys = []
    for text in sets:
        path, _ = parse_override(text)
        if len(path) != 2 or path[0] != "sampler":
            raise NegrecError(f"--set takes sampler options (sampler.KEY=VALUE), got '{text}'")
        keys.append(path[1])
    derived_k = raw.get("name") in ("softmax_v", "softmax_tau") and raw.get("k") == raw.get("pool")
    if derived_k and "pool" in keys and "k" not in keys:
        raw.pop("k", None)  # k follows pool for the weighted-pool samplers
    return apply_overrides({"sampler": raw}, sets)["sampler"]


def _label(options: dict[str, Any], sets: list[str]) -> str:
    from negrec.experiment.config import parse_override

    parts = [str(options["name"])]
    for text in sets:
        path, value = parse_override(text)
        parts.append(f"{path[-1]}{value}")
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


def run_hardness(args: argparse.Namespace) -> int:
    """Handler of ``negrec hardness``; returns the exit status."""
    from negrec import hardness as H
    from negrec.experiment.artifacts import load_weights, read_split, require_finished
    from negrec.experiment.config import load_config
    from negrec.experiment.runner import build_components
    from negrec.samplers import SAMPLERS
    from negrec.train import resolve_device

    run = Path(args.run)
    require_finished(run)
    if args.users < 1:
        raise NegrecError(f"--users must be >= 1, got {args.users}")
    if args.draws < 1:
        raise NegrecError(f"--draws must be >= 1, got {args.draws}")
    ranks = _parse_ranks(args.ranks)
    try:
        device = resolve_device(args.device)
    except ConfigError as err:
        raise NegrecError(f"--device {err.detail}") from None

    config = load_config(run / "config.toml")
    options = sampler_options(to_dict(config.sampler), args.sampler, args.set)
    name = options.get("name")
    if not isinstance(name, str):
        raise NegrecError(f"sampler name must be a string, got {name!r}")
    sampler_config = SAMPLERS.config(name, options, "sampler")

    split = read_split(run)  # stored in the run (older runs: re-read from the config's data)
    parts = build_components(config, split)
    model = parts.model
    if model.input_kind != "user":
        raise NegrecError(
            f"hardness needs a model scored by user id; '{config.model.name}' takes "
            f"{model.input_kind} input"
        )
    load_weights(run, model, device)
    sampler = SAMPLERS.get(name, "sampler.name")(sampler_config, split.train)

    train = split.train
    eligible = np.flatnonzero(
        (split.valid.user_degrees > 0)
        & (train.user_degrees > 0)
        & (train.user_degrees < train.n_items)
    )
    if eligible.size == 0:
        raise NegrecError(
            f"{run}: no validation user with both a training positive and a negative item"
        )
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(eligible, size=min(args.users, eligible.size), replace=False))
    users = torch.as_tensor(chosen, device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    result = H.measure(
        model,
        train,
        sampler,
        users,
        draws=args.draws,
        generator=generator,
        held_out=(split.valid, split.test),
    )

    label = _label(options, args.set)
    if ranks is not None and min(ranks) > result.max_rank:
        raise NegrecError(
            f"--ranks {args.ranks}: every rank is beyond the {result.max_rank:,} negatives a "
            "user has here"
        )
    table = result.table(ranks)
    print(
        f"Hardness of sampler {label} under the model of {run} "
        f"({result.n_users} validation users x {args.draws} positives; "
        "Figure 7 of Shi et al., WWW 2023)."
    )
    print("P(r) = probability that a drawn negative is among the user's top-r negatives.")
    print()
    print("| r | P(r) sampler | P(r) uniform | ratio |")
    print("|---:|---:|---:|---:|")
    for row in table.itertuples(index=False):
        print(f"| {row.r} | {row.sampler:.4g} | {row.uniform:.4g} | {row.ratio:.3g} |")
    print()
    theory = "n/a" if result.beta_theory is None else f"{result.beta_theory:.4g}"
    print(f"implied beta of OPAUC(beta): theory {theory}, measured {result.beta_measured:.4g}")
    print("  (measured: 2 E[(rank - 1/2) / n-], the top fraction with the same mean rank)")
    print(
        f"false negatives: {result.held_out_share:.4g} of the drawn weight falls on the "
        f"user's validation or test items (uniform: {result.held_out_uniform:.4g})"
    )

    out = Path(args.out) if args.out else run
    csv = H.atomic_write(
        out / f"hardness-{label}.csv",
        lambda tmp: table.assign(
            beta_theory=result.beta_theory,
            beta_measured=result.beta_measured,
            held_out_share=result.held_out_share,
            held_out_uniform=result.held_out_uniform,
        ).to_csv(tmp, index=False),
    )
    png = H.plot(result, out / f"hardness-{label}.png", label=label)
    print(f"\ntable: {csv}\nplot: {png}")
    return 0

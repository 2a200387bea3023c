"""``negrec reproduce PAPER --dataset NAME``: a paper's comparison on any dataset.

The ``simce``, ``hns`` and ``loss-theory`` presets carry, besides their ``[grid]`` (the
fixed runs of ``negrec sweep``), a tuning plan (``[tune]``, see
:mod:`negrec.experiment.tune`: one study per family, over the paper's own ranges, every
family tuned as hard as the others) and a ``[reproduce]`` table:

    [reproduce]
    paper = "Yang et al., SimCE: Simplifying Cross-Entropy Loss for Collaborative Filtering"
    metrics = ["ndcg@20", "recall@20"]   # compared with the published figures
    baseline = "bpr"                     # the study the others are compared with
    budget.small = { "tune.trials" = 8 }
    budget.full = { "tune.trials" = 30 }

    [[reproduce.published]]              # the paper's figures on one dataset
    dataset = "MovieLens-1M"
    names = ["ml-1m", "ml-1m-lightgcn"]  # registry / cache / folder names that are it
    source = "Table 2"
    figures.mf.bpr = { "recall@20" = 0.2393, "ndcg@20" = 0.2570 }

``--dataset`` is a prepared cache entry (``negrec data fetch NAME``), or a folder with
``train.txt`` and ``test.txt`` (any format negrec reads; the test split is given, the
validation split is carved from train). The run tunes every study on validation, confirms
each best trial with ``--seeds`` seeds and writes ``reproduce.md``: the tuning, the
aggregated confirm runs and the published figures next to ours with the relative
difference ("—" where the paper has no figure for this dataset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negrec.errors import NegrecError
from negrec.experiment.aggregate import paired_t
from negrec.experiment.config import apply_overrides, preset_names
from negrec.experiment.grid import read_source, sanitize
from negrec.experiment.tune import Log, _print
from negrec.experiment.tune_plan import TunePlan, check_overrides, parse_plan

PAPERS = ("simce", "hns", "loss-theory")
BUDGETS = ("small", "full")


@dataclass
class Dataset:
    """Where ``--dataset`` points: the data and split tables, and the name the published
    figures are looked up by."""

    key: str  # registry / cache name, or the folder's name
    kind: str  # "cache" or "folder"
    data: dict[str, Any]
    split: dict[str, Any]


def resolve_dataset(text: str, valid: float | str = 0.1) -> Dataset:
    """``--dataset``: a folder with train.txt / test.txt, or a prepared cache entry."""
    path = Path(text).expanduser()
    if path.is_dir():
        missing = [f for f in ("train.txt", "test.txt") if not (path / f).is_file()]
        if missing:
            raise NegrecError(
                f"{path}: a dataset folder needs train.txt and test.txt (no {missing[0]})"
            )
        return Dataset(
            key=path.resolve().name,
            kind="folder",
            data={
                "source": "presplit",
                "root": str(path.resolve()),
                "train": "train.txt",
                "test": "test.txt",
                "on_unseen": "keep",  # test items absent from train stay in the catalogue
            },
            split={"method": "given", "valid": valid, "seed": 0},
        )
    from negrec.data.cache import is_prepared, read_meta
    from negrec.data.datasets import REGISTRY

    if "/" in text or "\\" in text or text.startswith((".", "~")):
        raise NegrecError(f"--dataset {text}: no such folder")

    if is_prepared(text):
        presplit = bool(read_meta(text).get("has_test"))
        split = {"method": "given", "valid": valid, "seed": 0} if presplit else {"method": "random"}
        return Dataset(key=text, kind="cache", data={"source": "cached", "name": text}, split=split)
    if text in REGISTRY:
        raise NegrecError(
            f"dataset {text!r} is not prepared yet: run `negrec data fetch {text}` first"
        )
    raise NegrecError(
        f"--dataset {text}: neither a folder with train.txt / test.txt nor a prepared "
        "dataset (`negrec data list` shows the registry, `negrec data fetch NAME` prepares one)"
    )


@dataclass
class Published:
    """A paper's figures on one dataset: model -> study -> metric -> value."""

    dataset: str
    source: str
    figures: dict[str, dict[str, dict[str, float]]]


def published_for(table: dict[str, Any], dataset: Dataset) -> Published | None:
    """The ``[[reproduce.published]]`` entry that is ``dataset``: its ``names`` hold the
    cache name, or its ``folders`` the folder's name (any case)."""
    field = "folders" if dataset.kind == "folder" else "names"
    for entry in table.get("published", []):
        names = {str(n).lower() for n in entry.get(field, [])}
        if dataset.key.lower() in names:
            return Published(
                str(entry.get("dataset", dataset.key)),
                str(entry.get("source", "")),
                entry.get("figures", {}),
            )
    return None


def load_reproduction(
    paper: str,
    dataset: str,
    *,
    budget: str = "small",
    seeds: int | None = None,
    output: str | Path | None = None,
    overrides: list[str] | None = None,
) -> tuple[TunePlan, dict[str, Any], Dataset]:
    """The tuning plan of preset ``paper`` on ``dataset`` (budget, seeds and ``--set``
    applied, in that order), its ``[reproduce]`` table and the resolved dataset.

    A bad argument is a :class:`NegrecError` naming it as this function does (``seeds``),
    which is also the name of its ``negrec reproduce`` option (``--seeds``); the command
    line checks its options before calling this, with argparse's own messages."""
    if paper not in PAPERS or paper not in preset_names():
        raise NegrecError(f"unknown paper {paper!r} (expected one of: {', '.join(PAPERS)})")
    if budget not in BUDGETS:
        raise NegrecError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    raw = read_source(paper)
    table = raw.get("reproduce", {})
    valid = raw.get("split", {}).get("valid", 0.1)
    where = resolve_dataset(dataset, valid)
    raw["data"] = where.data
    raw["split"] = where.split
    steps = [f"{k}={_toml(v)}" for k, v in table.get("budget", {}).get(budget, {}).items()]
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise NegrecError(
                f"seeds (how many confirm seeds) must be a whole number >= 1, got {seeds!r}"
            )
        steps.append(f"tune.seeds={list(range(seeds))}")
    raw = apply_overrides(raw, [*steps, *(overrides or [])])
    folder = (
        Path(output)
        if output is not None
        else Path("runs") / "reproduce" / sanitize(f"{paper}-{where.key}")
    )
    plan = parse_plan(raw, folder=folder)
    check_overrides(plan, overrides or [])
    return plan, table, where


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return (
        repr(value)
        if not isinstance(value, list)
        else "[" + ", ".join(_toml(v) for v in value) + "]"
    )


# ------------------------------------------------------------------------------ the table
def _study_of(run_name: str) -> str:
    return run_name.split(",trial=", 1)[0]


def published_table(
    summaries: list[dict[str, Any]],
    studies: list[str],
    metrics: list[str],
    model: str,
    published: Published | None,
    baseline: str | None = None,
) -> str:
    """Markdown: per study and metric, our test mean ± std over the confirm seeds, the
    published figure and our relative difference to it ("—" where there is none), and
    the change against the ``baseline`` study with a paired t-test over shared seeds."""
    by_study: dict[str, dict[int, dict[str, Any]]] = {}
    for s in summaries:
        by_study.setdefault(_study_of(str(s["name"])), {})[int(s["seed"])] = s
    header = [
        "study",
        "metric",
        "ours (test, mean ± std)",
        "seeds",
        "published",
        "ours vs published",
    ]
    if baseline:
        header.append(f"vs {baseline} (paired t-test)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    figures = published.figures.get(model, {}) if published else {}
    for study in studies:
        runs = by_study.get(study, {})
        for metric in metrics:
            values = np.array([float(r["test"].get(metric, math.nan)) for r in runs.values()])
            ours = _spread(values)
            if any(r.get("budget_bound") for r in runs.values()):
                ours += " (budget-bound)"
            paper = figures.get(study, {}).get(metric)
            cells = [
                study,
                metric,
                ours,
                str(len(values)),
                "—" if paper is None else f"{paper:.4f}",
                "—"
                if paper is None or not len(values)
                else f"{100 * (values.mean() / paper - 1):+.1f}%",
            ]
            if baseline:
                cells.append(_versus(runs, by_study.get(baseline, {}), metric, study == baseline))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread(values: np.ndarray) -> str:
    if not len(values):
        return "—"
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def _versus(ours: dict[int, Any], base: dict[int, Any], metric: str, same: bool) -> str:
    if same:
        return "(baseline)"
    shared = sorted(set(ours) & set(base))
    if not shared:
        return "—"
    a = np.array([float(ours[s]["test"][metric]) for s in shared])
    b = np.array([float(base[s]["test"][metric]) for s in shared])
    text = f"{100 * (a.mean() / b.mean() - 1):+.1f}%"
    if len(shared) >= 2:
        t, p = paired_t(a, b)
        text += (
            f" (t = {t:.2f}, p = {p:.3g}, {len(shared)} seeds)"
            if not math.isnan(p)
            else f" (the same difference on all {len(shared)} seeds: no t-test)"
        )
    return text


def reproduce(
    paper: str,
    dataset: str,
    *,
    budget: str = "small",
    seeds: int | None = None,
    output: str | Path | None = None,
    overrides: list[str] | None = None,
    workers: int = 1,
    log: Log = _print,
) -> tuple[str, Path]:
    """Tune, confirm and compare with the published figures; returns the report and its
    path (``{output}/reproduce.md``)."""
    import json

    from negrec.atomic import atomic_write_text
    from negrec.experiment.runner import load_split
    from negrec.experiment.tune import confirm_stage, tune_studies, write_tune_report

    plan, table, where = load_reproduction(
        paper, dataset, budget=budget, seeds=seeds, output=output, overrides=overrides
    )
    model = str(plan.config(plan.studies[0], {}, "model").model.name)
    published = published_for(table, where)
    split = load_split(plan.config(plan.studies[0], {}, "data"))
    log(
        f"reproduce {paper} on {where.key} ({split.n_users} users, {split.n_items} items): "
        f"{len(plan.studies)} studies x {plan.trials} trials, then seeds {plan.seeds}"
    )
    results = tune_studies(plan, split, log=log)
    runs = confirm_stage(plan, results, split, workers=workers, log=log)
    summaries = [json.loads((run / "summary.json").read_text(encoding="utf-8")) for run in runs]
    metrics = [str(m) for m in table.get("metrics", [plan.metric])]
    baseline = table.get("baseline")
    names = [s.name for s in plan.studies]
    source = (
        f"{table.get('paper', paper)}, {published.source}, {published.dataset} ({model})"
        if published
        else f"{table.get('paper', paper)}: no published figures for '{where.key}' ({model})"
    )
    comparison = (
        f"## Published vs ours\n\nPublished: {source}. The paper selected epochs on test; "
        "negrec selects on validation and reads test once per confirm run.\n\n"
        + published_table(summaries, names, metrics, model, published, baseline)
        + "\n"
    )
    text, _ = write_tune_report(plan, results, runs, extra=comparison)
    path = plan.folder / "reproduce.md"
    atomic_write_text(path, text)
    return text, path

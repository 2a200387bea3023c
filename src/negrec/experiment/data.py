"""From a DataConfig and SplitConfig to a Split: load, prepare, split."""

from __future__ import annotations

import dataclasses

from negrec.data.prepare import PrepareReport
from negrec.data.splits import Split, carve_validation, leave_one_out_split, random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.errors import ConfigError
from negrec.experiment.config import DataConfig, SplitConfig


def build_split(data: DataConfig, split: SplitConfig) -> Split:
    """Load the configured data and split it; bad files raise DataError (file, line).

    The split's ``report`` says what preparing the data dropped or kept (duplicates,
    unseen test rows, train/test overlaps...); None for the synthetic data."""
    made, report = _build_split(data, split)
    return made if report is None else dataclasses.replace(made, report=report)


def _build_split(data: DataConfig, split: SplitConfig) -> tuple[Split, PrepareReport | None]:
    report: PrepareReport | None = None
    if data.source == "synthetic":
        s = data.synthetic
        events = synthetic_interactions(
            s.n_users,
            s.n_items,
            s.mean_degree,
            n_clusters=s.n_clusters,
            affinity=s.affinity,
            popularity_exponent=s.popularity_exponent,
            seed=s.seed,
        )
    elif data.source == "cached":
        from negrec.data.cache import load_prepared

        assert data.name is not None
        events, test, report = load_prepared(data.name)
        presplit = test is not None
        if presplit != (split.method == "given"):
            raise ConfigError(
                "split.method",
                f"dataset '{data.name}' is {'' if presplit else 'not '}pre-split: use "
                + ("'given'" if presplit else "'random' or 'leave_one_out'"),
            )
        if test is not None:  # the given test, validation carved from train
            return carve_validation(events, test, split.valid, split.seed), report
    else:
        from negrec.data.loaders import load
        from negrec.data.prepare import prepare, prepare_presplit

        if data.source == "presplit":
            assert data.train is not None and data.test is not None
            train, test, report = prepare_presplit(
                data.resolve(data.train),
                data.resolve(data.test),
                format=data.format,
                min_rating=data.min_rating,
                k_core=data.k_core,
                on_unseen=data.on_unseen,
                **data.loader_options(),
                on_overlap=data.on_overlap,
            )
            return carve_validation(train, test, split.valid, split.seed), report
        assert data.path is not None
        events, report = prepare(
            load(data.resolve(data.path), format=data.format, **data.loader_options()),
            min_rating=data.min_rating,
            k_core=data.k_core,
        )
    if split.method == "leave_one_out":
        return leave_one_out_split(events), report
    return random_split(events, split.test_fraction, split.valid, split.seed), report


def _count(n: int, what: str) -> str:
    """``1 test row``, ``2 test rows``: ``what`` (which names a ``row``) with that word
    made plural, wherever it stands (``duplicate row`` -> ``duplicate rows``)."""
    words = what.split(" ")
    if n != 1 and "row" in words:
        words[words.index("row")] = "rows"
    return f"{n:,} " + " ".join(words)


def describe_data(report: PrepareReport) -> str:
    """One line of what preparing the data dropped and kept, and what is left, e.g.
    ``read 25 rows; dropped 1 duplicate row, 1 test row unseen in train; 6 users x 5
    items, 22 interactions (train 17, test 5)``."""
    dropped = [
        _count(n, what)
        for n, what in (
            (report.dropped_duplicates, "duplicate row"),
            (report.dropped_threshold, f"row below rating {report.min_rating:g}")
            if report.min_rating is not None
            else (0, ""),
            (report.dropped_kcore, "row by k-core"),
            (report.dropped_unseen, "test row unseen in train"),
            (report.dropped_overlap, "test row repeating a training pair"),
        )
        if n
    ]
    kept = [
        _count(n, what)
        for n, what in (
            (report.unseen_kept, "test row unseen in train"),
            (report.overlap_kept, "test row repeating a training pair"),
        )
        if n
    ]
    parts = [f"read {report.rows_read:,} rows", "dropped " + (", ".join(dropped) or "nothing")]
    if kept:
        parts.append("kept " + ", ".join(kept))
    left = f"{report.n_users:,} users x {report.n_items:,} items, "
    left += f"{report.n_interactions:,} interactions"
    if report.parts:
        left += " (" + ", ".join(f"{p} {n:,}" for p, n in report.parts.items()) + ")"
    return "; ".join([*parts, left])

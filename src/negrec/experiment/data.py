"""From a DataConfig and SplitConfig to a Split: load, prepare, split."""

from __future__ import annotations

from negrec.data.splits import Split, carve_validation, leave_one_out_split, random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.errors import ConfigError
from negrec.experiment.config import DataConfig, SplitConfig


def build_split(data: DataConfig, split: SplitConfig) -> Split:
    """Load the configured data and split it; bad files raise DataError (file, line)."""
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
        events, test, _ = load_prepared(data.name)
        presplit = test is not None
        if presplit != (split.method == "given"):
            raise ConfigError(
                "split.method",
                f"dataset '{data.name}' is {'' if presplit else 'not '}pre-split: use "
                + ("'given'" if presplit else "'random' or 'leave_one_out'"),
            )
        if test is not None:  # the given test, validation carved from train
            return carve_validation(events, test, split.valid, split.seed)
    else:
        from negrec.data.loaders import load
        from negrec.data.prepare import prepare, prepare_presplit

        if data.source == "presplit":
            assert data.train is not None and data.test is not None
            train, test, _ = prepare_presplit(
                data.resolve(data.train),
                data.resolve(data.test),
                format=data.format,
                min_rating=data.min_rating,
                k_core=data.k_core,
                on_unseen=data.on_unseen,
                **data.loader_options(),
            )
            return carve_validation(train, test, split.valid, split.seed)
        assert data.path is not None
        events, _ = prepare(
            load(data.resolve(data.path), format=data.format, **data.loader_options()),
            min_rating=data.min_rating,
            k_core=data.k_core,
        )
    if split.method == "leave_one_out":
        return leave_one_out_split(events)
    return random_split(events, split.test_fraction, split.valid, split.seed)

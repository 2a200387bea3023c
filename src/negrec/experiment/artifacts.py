"""What makes a run directory a self-contained model: the split it was trained on.

``interactions.npz`` (written by the runner beside ``best.pt``) holds the raw-id
vocabularies (``user_ids`` [U], ``item_ids`` [I]: int64, or unicode strings kept exactly,
so "007" stays "007") and, for each part of the split (train, valid, test), each user's
item count (``<part>_degrees`` int32 [U]) and items (``<part>_items`` int32 [nnz], sorted
within a user) -- plus the parts' timestamps (``<part>_times`` float64 [nnz]) when the
model reads histories in time order. Compressed numpy arrays, read without pickle.

With it, :func:`negrec.load` rebuilds the model (LightGCN's graph is the train part),
masks what each user has seen and builds sequential histories without the data file.
Runs made before this file existed are read by :func:`read_split` from the data their
config names, when it is still there.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from pandas.api.types import infer_dtype

from negrec.atomic import atomic_write
from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import NegrecError, first_line

INTERACTIONS = "interactions.npz"
BEST = "best.pt"  # the selected weights (a state dict)
PARTS = ("train", "valid", "test")


def id_array(ids: np.ndarray) -> np.ndarray:
    """Raw ids as a pickle-free array: int64 where they are integers, else unicode
    strings (every id a ``str``: the loaders give one or the other). Ids of other types,
    or text ending in a NUL character (which numpy's unicode arrays cannot hold), are a
    :class:`NegrecError`."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind == "U":
        return ids
    if not ids.size:
        return np.empty(0, dtype="<U1")
    if infer_dtype(ids, skipna=False) != "string":  # one compiled pass over the objects
        kinds = sorted({type(v).__name__ for v in ids.tolist()})  # (the error path only)
        raise NegrecError(f"raw ids mix types ({', '.join(kinds)}); cannot store them")
    text = ids.astype(str)  # [N] unicode
    # numpy's unicode arrays drop trailing NULs ("a\0" -> "a"): the total length tells
    if int(np.char.str_len(text).sum()) != len("".join(ids.tolist())):
        lost = ids[np.char.str_len(text) != np.fromiter(map(len, ids), int, ids.size)]
        raise NegrecError(f"raw id {lost[0]!r} ends with a NUL character; cannot store it")
    return text


def write_split(path: Path, split: Split, *, times: bool) -> None:
    """Store ``split`` (ids, each part's rows, and timestamps when ``times``) atomically."""
    arrays: dict[str, np.ndarray] = {
        "user_ids": id_array(split.train.user_ids),
        "item_ids": id_array(split.train.item_ids),
    }
    small = split.n_items < 2**31
    for name in PARTS:
        part: Interactions = getattr(split, name)
        arrays[f"{name}_degrees"] = part.user_degrees.astype(np.int32 if small else np.int64)
        arrays[f"{name}_items"] = part.indices.astype(np.int32 if small else np.int64)
        if times and part.timestamps is not None:
            arrays[f"{name}_times"] = np.asarray(part.timestamps, dtype=np.float64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


def _require_zip(path: Path, failed: str, what: str) -> None:
    """Both ``interactions.npz`` and ``best.pt`` are zip archives: a file that is not one
    is damaged, said plainly (numpy and torch would advise loading it as a pickle)."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise NegrecError(
            f"{path}: {failed}: damaged or truncated (not a zip archive, as {what} is)"
        )


def _read(path: Path) -> Split:
    _require_zip(path, "cannot read the run's interactions", "an .npz file")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise NegrecError(
            f"{path}: cannot read the run's interactions ({first_line(err)})"
        ) from None
    try:
        user_ids, item_ids = arrays["user_ids"], arrays["item_ids"]
        parts = {}
        for name in PARTS:
            degrees = arrays[f"{name}_degrees"].astype(np.int64)
            users = np.repeat(np.arange(user_ids.size, dtype=np.int64), degrees)
            parts[name] = Interactions.from_arrays(
                users,
                arrays[f"{name}_items"].astype(np.int64),
                n_users=user_ids.size,
                n_items=item_ids.size,
                timestamps=arrays.get(f"{name}_times"),
                user_ids=user_ids,
                item_ids=item_ids,
            )
    except (KeyError, ValueError) as err:
        raise NegrecError(f"{path}: damaged run interactions ({first_line(err)})") from None
    return Split(train=parts["train"], valid=parts["valid"], test=parts["test"])


def read_split(run: Path) -> Split:
    """The split a run was trained on: from its ``interactions.npz``, or, for a run made
    before negrec stored it, rebuilt from the data its config names (an error naming the
    file when that data is gone)."""
    stored = run / INTERACTIONS
    if stored.is_file():
        return _read(stored)
    from negrec.experiment.config import ExperimentConfig, read_toml
    from negrec.experiment.runner import load_split

    config = ExperimentConfig.from_dict(read_toml(run / "config.toml"))
    try:
        return load_split(config)
    except NegrecError as err:
        raise NegrecError(
            f"{run}: made before runs stored their ids ({INTERACTIONS}), and its data cannot "
            f"be read again: {err}"
        ) from None


def require_finished(run: Path) -> None:
    """A :class:`NegrecError` unless ``run`` holds a finished run's ``config.toml`` and
    ``best.pt`` (what :func:`negrec.load` and ``negrec hardness`` read)."""
    for needed in ("config.toml", BEST):
        if not (run / needed).is_file():
            raise NegrecError(f"{run}: not a finished run directory (no {needed})")


def load_weights(run: Path, model: torch.nn.Module, device: torch.device) -> None:
    """Load the run's selected weights (``best.pt``) into ``model`` and move it to
    ``device``; a damaged file or another model's weights is one :class:`NegrecError`."""
    _require_zip(run / BEST, "cannot load the run's weights", "a file torch.save wrote")
    try:
        state = torch.load(run / BEST, map_location=device, weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # damaged file, or weights of another model
        raise NegrecError(
            f"{run / BEST}: cannot load the run's weights ({first_line(err)})"
        ) from None
    model.to(device)

"""Run directories, written atomically.

A run is built in a hidden temporary directory beside its final place and renamed into
place only when complete, so a crash or a bad input never leaves a half-written run that
``report`` or a resumed sweep could mistake for a finished one.

Layout: ``config.toml`` (resolved config), ``environment.json`` (versions, device, git
commit), ``history.csv`` (one row per epoch), ``test_per_user.csv`` (per-user test
metrics; ``user`` is the raw id of the data, ``user_index`` the internal one),
``summary.json`` (best epoch, validation and test means), ``best.pt`` (the selected
weights), ``interactions.npz`` (raw-id vocabularies and each user's items per split part:
:mod:`negrec.experiment.artifacts`). Data paths in ``config.toml`` are absolute;
``environment.json``'s ``data_given`` keeps them as the config gave them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w
import torch

from negrec.atomic import atomic_write, atomic_write_text, staging_folder
from negrec.errors import NegrecError
from negrec.train import TrainingDiverged

FILES = ("config.toml", "environment.json", "history.csv", "summary.json")


def environment() -> dict[str, Any]:
    """Versions, platform, device and git commit, for the record."""
    commit = None
    with suppress(OSError, subprocess.SubprocessError):
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
                check=False,
            ).stdout.strip()
            or None
        )
    from negrec import __version__

    return {
        "negrec": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_commit": commit,
    }


def unique_path(parent: Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-2``, ``-3``... if taken (a finished run is never
    overwritten by a later one of the same name)."""
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    return candidate


CHECKPOINT = "checkpoint.pt"


@contextmanager
def staging_dir(
    parent: Path, name: str, existing: Path | None = None, *, lower_lr: float | None = None
) -> Iterator[Path]:
    """A hidden temporary directory in ``parent`` (or ``existing``, when resuming).

    If the block raises before any epoch finished, the directory is removed; once a
    checkpoint exists it is kept, so the run can be resumed (``negrec run --resume``).
    After a divergence the advice resumes with ``--set train.lr=<lower_lr>``: resuming
    with the same settings would diverge again at the same batch."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = existing or staging_folder(parent, prefix=f".{name}.tmp-")
    try:
        yield tmp
    except BaseException as error:
        if isinstance(error, TrainingDiverged) and error.batch == 1 and error.epoch != 1:
            # the checkpoint's own weights gave the non-finite loss, before any step of the
            # next epoch: no resume can avoid it, whatever the learning rate
            advice = "again from the start" + (
                ""
                if lower_lr is None
                else f" with a lower learning rate (--set train.lr={lower_lr:g})"
            )
            print(
                f"negrec: the last checkpoint in {tmp} already gives a non-finite loss (batch 1 "
                f"of epoch {error.epoch}), so resuming it cannot help; run the config "
                f"{advice}, and delete {tmp}",
                file=sys.stderr,
            )
        elif (tmp / CHECKPOINT).exists():
            how, command = "continue with", f"negrec run --resume {tmp}"
            if isinstance(error, TrainingDiverged) and lower_lr is not None:
                how = "continue with a lower learning rate"
                command += f" --set train.lr={lower_lr:g}"
            print(
                f"negrec: the last good checkpoint is kept in {tmp}; {how}: {command}",
                file=sys.stderr,
            )
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files of writes cut short in ``folder`` (``.NAME.XXXX.tmp``,
    see :func:`negrec.atomic.atomic_write`): a resumed run must not publish them."""
    removed = sorted(p for p in folder.glob(".*.tmp") if p.is_file())
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def orphan_staging(parent: Path, name: str) -> list[Path]:
    """Staging directories ``.NAME.tmp-*`` in ``parent`` without a checkpoint: left by a
    run killed before its first epoch ended (or being filled by a run starting now);
    ``--resume`` cannot use them."""
    if not parent.is_dir():
        return []
    return sorted(
        p for p in parent.glob(f".{name}.tmp-*") if p.is_dir() and not (p / CHECKPOINT).exists()
    )


def find_resumable(path: Path) -> Path:
    """The staging directory to resume: ``path`` itself, or the single ``.NAME.tmp-*``
    beside ``path`` (given as OUTPUT/NAME) that holds a checkpoint."""
    if (path / CHECKPOINT).is_file():
        return path
    candidates = sorted(
        p for p in path.parent.glob(f".{path.name}.tmp-*") if (p / CHECKPOINT).is_file()
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise NegrecError(f"{path}: no interrupted run to resume (no {CHECKPOINT} found)")
    listed = ", ".join(str(p) for p in candidates)
    raise NegrecError(f"{path}: several interrupted runs match; pick one of: {listed}")


def publish(tmp: Path, final: Path) -> Path:
    """Move a finished staging directory into place (atomic rename on one filesystem),
    then sync the parent folder so the rename itself survives a power cut. The files were
    synced as they were written, so a published run is never a set of empty files."""
    os.replace(tmp, final)
    _sync_directory(final.parent)
    return final


def _sync_directory(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened for fsync
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def write_toml(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, tomli_w.dumps(data))


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    atomic_write(path, lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False))


def write_per_user(
    path: Path,
    users: np.ndarray,
    per_user: dict[str, np.ndarray],
    user_ids: np.ndarray | None = None,
) -> None:
    """Per-user metrics: ``user`` (the raw id from the data, ``user_ids[users]``; the
    internal index where no vocabulary is given), ``user_index`` (the internal index
    0..n-1 the model uses) and one column per metric, one row per user in ``users``."""
    raw = users if user_ids is None else np.asarray(user_ids)[users]
    table = pd.DataFrame({"user": raw, "user_index": users, **per_user})
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))


def read_per_user(path: Path) -> pd.DataFrame:
    """A ``test_per_user.csv`` as written by :func:`write_per_user`, ids exact.

    ``user`` is read as text, exactly as written (``"007"`` stays ``"007"``, ``"NA"`` is an
    id, not a missing value), so tables of runs on the same data join on it. A file of a
    run made before raw ids were recorded has only ``user``, the internal index: it is
    kept (as text) and copied to an integer ``user_index``.
    """
    table = pd.read_csv(path)
    if "user" not in table.columns:
        raise NegrecError(f"{path}: no 'user' column; expected a per-user metrics table")
    table["user"] = pd.read_csv(path, usecols=["user"], dtype=str, keep_default_na=False)["user"]
    if "user_index" not in table.columns:  # a run from before raw ids
        table.insert(1, "user_index", table["user"].astype(np.int64))
    return table


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and all((path / f).exists() for f in FILES)

"""One way to write a file so that no reader ever sees half of it.

The content goes to a temporary file in the destination's directory (same filesystem),
which then replaces the destination with :func:`os.replace`, an atomic rename. On error
the temporary file is removed and the old destination, if any, is untouched. Files that
belong together (an export's users and items) are written all or nothing with
:func:`atomic_write_files`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from negrec.errors import NegrecError


def _umask() -> int:
    mask = os.umask(0o022)  # read the process umask by setting and restoring it
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it onto ``path``. A
    ``path`` that is a folder is a :class:`NegrecError` naming it, before anything is
    written (the rename would fail naming the temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise NegrecError(f"{path}: is a folder; expected the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:  # durable before it becomes visible
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_files(
    folder: str | Path, writers: Mapping[str, Callable[[Path], object]]
) -> list[Path]:
    """Write several files into ``folder`` all or nothing: ``writers`` maps each file's
    name to a function filling the path it is given. Every file is filled and synced in a
    hidden staging folder first; only when all are complete do they take their places. A
    failure before that leaves ``folder`` as it was (files from an earlier write intact,
    no new file, no staging folder).

    A ``folder`` that does not exist yet is built whole beside its place and renamed into
    it (one atomic step). Into an existing folder (which may hold other files) the
    complete files are renamed one after another: only a kill in the microseconds
    between two renames could leave a mix of new and old files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NegrecError(f"{folder}: is a file; expected the folder to write into")
    for name in writers:
        if (folder / name).is_dir():
            raise NegrecError(f"{folder / name}: is a folder; expected the path of a file")
    fresh = not folder.exists()
    if fresh:
        folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(
        folder.parent if fresh else folder, prefix=f".{folder.name}.tmp-" if fresh else ".tmp-"
    )
    try:
        for name, write in writers.items():
            path = staging / name
            write(path)
            with open(path, "rb") as handle:  # durable before it becomes visible
                os.fsync(handle.fileno())
            os.chmod(path, 0o666 & ~_umask())
        if fresh:
            os.replace(staging, folder)
        else:
            for name in writers:
                os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # (gone already after a fresh rename)
    return [folder / name for name in writers]


def staging_folder(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A new hidden folder in ``parent`` to fill and later rename into place, with the
    usual folder mode (``mkdtemp`` makes it 0700, which a renamed run or cache entry would
    keep, unreadable to the rest of a group or a Ray cluster's other users)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(folder, 0o777 & ~_umask())
    return folder


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_figure(fig: object, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))  # type: ignore[attr-defined]
    finally:
        plt.close(fig)  # type: ignore[arg-type]

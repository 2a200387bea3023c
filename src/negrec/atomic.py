"""One way to write a file so that no reader ever sees half of it.

The content goes to a temporary file in the destination's directory (same filesystem),
which then replaces the destination with :func:`os.replace`, an atomic rename. On error
the temporary file is removed and the old destination, if any, is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
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

"""Errors a user can act on.

Every error negrec raises for bad input is a :class:`NegrecError`: the CLI prints its
one-line message and exits with status 2, never a traceback from deep inside.
"""

from __future__ import annotations

from pathlib import Path


def first_line(err: BaseException) -> str:
    """The first line of an error's message, or its type's name when the message is empty
    (``str(EOFError())`` is ""), for quoting a library's error in one line."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class NegrecError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""

    exit_code = 2


class DataError(NegrecError):
    """A data file is malformed. The message names the file, the line and what was expected."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


class ConfigError(NegrecError):
    """A configuration value is unknown, of the wrong type, or impossible; names the key."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.detail = message  # the message without the key, for callers that name it
        super().__init__(f"config key '{key}': {message}")

"""Typed configuration dataclasses that reject unknown keys and wrong types.

Every plugin (model, sampler, loss) declares a small ``Config`` dataclass; the experiment
config is built from TOML tables with :func:`from_dict`, which names the offending key in
its error (nanoGPT-style overrides, LensKit-style per-component configs).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, get_args, get_origin

from negrec.errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "None")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints may stand for floats)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return coerce(value, option, key)
            except ConfigError as err:
                errors.append(err)
        for inner in errors:  # a table of the right shape with a bad value inside: say that
            if inner.key != key:
                raise inner
        names = " or ".join(_type_name(a) for a in get_args(tp))
        raise ConfigError(key, f"expected {names}, got {type(value).__name__} {value!r}")
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(key, f"expected one of {list(get_args(tp))}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(key, f"expected None, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):  # nan or inf: no setting of negrec means either
                raise ConfigError(key, f"expected a finite number, got {value!r}")
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=key)  # type: ignore[arg-type]
    elif isinstance(value, tp):
        return value
    raise ConfigError(key, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(full, f"unknown key (expected one of: {', '.join(fields)})")
        kwargs[key] = coerce(value, hints[key], full)
    try:
        obj = cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(prefix or cls.__name__, str(err)) from None
    for name in ("seed",):  # numpy's generators refuse negative seeds: say so up front
        value = getattr(obj, name, None)
        full = f"{prefix}.{name}" if prefix else name
        require(not isinstance(value, int) or value >= 0, full, f"must be >= 0, got {value}")
    check = getattr(obj, "validate", None)
    if check is not None:
        check(prefix)
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """The dataclass as plain TOML-friendly data (None values dropped)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def require(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError(key, message) unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)

"""Settings sections (``train:``, ``search:``) as dataclasses whose every field is declared once, as a Param.

    epochs: int = setting(int, 10, "training epochs", low=1)

declares the field ``epochs`` with its default, and the :class:`~nascore.blocks.spec.Param` (the schema blocks declare
their parameters with) named after it, whose type, range and doc :func:`check_settings`, listings and error
messages use. A rule the Param cannot say (a positive number, each item once, the keys and values of a mapping) is
a ``check`` function run after it:

    constraints: dict = setting("mapping", {}, "limits a trial must keep", check=positive_limits)
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from nascore.blocks.spec import Param
from nascore.errors import ParamError, suggest

_PARAM = "nascore.param"
_CHECK = "nascore.check"


def setting(type: Any, default: Any, doc: str, *, check: Callable[[Any], Any] | None = None,  # noqa: A002
            **limits: Any) -> Any:
    """A dataclass field: ``default``, and a Param of ``type``, ``doc`` and ``limits`` (``low``, ``high``,
    ``choices``) named after the field. A default of None means "not set" and is always accepted; a list or mapping
    default is copied for each instance.

    ``check(value)``, when given, runs on the value the Param accepted and returns it normalised, or raises a
    ParamError (its ``where`` a key inside the value, if any); the error is located at the parameter.
    """
    metadata = {_PARAM: Param("", type, default, doc, **limits), _CHECK: check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.cache
def _schema(cls: type) -> tuple[tuple[Param, Callable[[Any], Any] | None], ...]:
    return tuple((dataclasses.replace(f.metadata[_PARAM], name=f.name), f.metadata.get(_CHECK))
                 for f in dataclasses.fields(cls) if _PARAM in f.metadata)


def schema_of(settings: Any) -> tuple[Param, ...]:
    """The Params of a settings dataclass (class or instance), in declaration order."""
    return tuple(p for p, _ in _schema(settings if isinstance(settings, type) else type(settings)))


def check_settings(settings: Any) -> None:
    """Check and normalise (``1`` -> ``1.0`` for a float) every field declared by :func:`setting`, in place; a
    ParamError naming the parameter otherwise."""
    for p, check in _schema(type(settings)):
        value = p.check(getattr(settings, p.name))
        if check is not None and value is not None:
            try:
                value = check(value)
            except ParamError as err:
                raise err.located(f"parameter {p.name!r}") from None
        setattr(settings, p.name, value)


def positive(value: float) -> float:
    """A setting's check: a number above zero (a Param's ``low`` includes its bound)."""
    if value <= 0:
        raise ParamError(f"got {value!r}, expected a number > 0")
    return value


def each_once(value: tuple[Any, ...]) -> list[Any]:
    """A setting's check: a non-empty list naming each item once (returned as a list, as YAML writes it)."""
    if not value:
        raise ParamError("got an empty list, expected at least one item")
    twice = [v for i, v in enumerate(value) if v in value[:i]]
    if twice:
        raise ParamError(f"got {twice[0]!r} twice, expected each item once")
    return list(value)


def check_keys(given: Mapping[Any, Any], settings: Any, where: str) -> None:
    """Every key of ``given`` must be a field of the settings dataclass ``settings``; a ParamError naming ``where``,
    the key and the closest known keys otherwise."""
    known = [f.name for f in dataclasses.fields(settings)]
    for key in given:
        if key not in known:
            raise ParamError(f"unknown key{suggest(str(key), known)}; expected one of: {', '.join(known)}",
                             where=f"{where}: {key!r}")


__all__ = ["check_keys", "check_settings", "each_once", "positive", "schema_of", "setting"]

"""Settings sections (``train:``, ``search:``) as dataclasses whose every field is declared once, as a Param.

    epochs: int = setting(int, 10, "training epochs", low=1)

declares the field ``epochs`` with its default, and the :class:`~nascore.blocks.spec.Param` (the schema blocks declare
their parameters with) named after it, whose type, range and doc :func:`check_settings`, listings and error
messages use.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from nascore.blocks.spec import Param
from nascore.errors import ParamError, suggest

_PARAM = "nascore.param"


def setting(type: Any, default: Any, doc: str, **limits: Any) -> Any:  # noqa: A002 - Param's own word
    """A dataclass field: ``default``, and a Param of ``type``, ``doc`` and ``limits`` (``low``, ``high``,
    ``choices``) named after the field. A default of None means "not set" and is always accepted."""
    return dataclasses.field(default=default, metadata={_PARAM: Param("", type, default, doc, **limits)})


@functools.cache
def _schema(cls: type) -> tuple[Param, ...]:
    return tuple(dataclasses.replace(f.metadata[_PARAM], name=f.name) for f in dataclasses.fields(cls)
                 if _PARAM in f.metadata)


def schema_of(settings: Any) -> tuple[Param, ...]:
    """The Params of a settings dataclass (class or instance), in declaration order."""
    return _schema(settings if isinstance(settings, type) else type(settings))


def check_settings(settings: Any) -> None:
    """Check and normalise (``1`` -> ``1.0`` for a float) every field declared by :func:`setting`, in place; a
    ParamError naming the parameter otherwise."""
    for p in schema_of(settings):
        setattr(settings, p.name, p.check(getattr(settings, p.name)))


def check_keys(given: Mapping[Any, Any], settings: Any, where: str) -> None:
    """Every key of ``given`` must be a field of the settings dataclass ``settings``; a ParamError naming ``where``,
    the key and the closest known keys otherwise."""
    known = [f.name for f in dataclasses.fields(settings)]
    for key in given:
        if key not in known:
            raise ParamError(f"unknown key{suggest(str(key), known)}; expected one of: {', '.join(known)}",
                             where=f"{where}: {key!r}")


__all__ = ["check_keys", "check_settings", "schema_of", "setting"]

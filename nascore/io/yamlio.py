"""Safe YAML reading and atomic writing, shared by graphs, search spaces and run files.

Only ``yaml.safe_load`` (C loader when available) ever parses user files; errors name the file, line and column.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nascore.errors import DocumentError, NascoreError, suggest

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MAX_BYTES = 16 << 20
MAX_NODES = 1_000_000  # values after alias expansion: a "billion laughs" document stops here
MAX_DEPTH = 64         # nesting; deeper documents would exhaust the recursion of whatever consumes them


def read_bytes(path: str | Path, error: type[NascoreError], limit: int = MAX_BYTES, what: str = "file") -> bytes:
    """A user's file, read whole but bounded; missing, unreadable, special or oversized files are ``error``s."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            raise error(f"is not a regular file (a device or a pipe?); expected a {what}", where=str(path))
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)  # bounded: never read an endless stream whole
    except FileNotFoundError:
        raise error("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise error(f"is a directory, expected a {what}", where=str(path)) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", where=str(path)) from None
    if len(raw) > limit:
        raise error(f"is larger than {limit} bytes, expected a {what} of at most that", where=str(path))
    return raw


def read_yaml(path: str | Path, error: type[NascoreError] = DocumentError) -> Any:
    """Parse a YAML file safely; a missing, unreadable, non-UTF-8 or malformed file is a clear error."""
    raw = read_bytes(path, error, MAX_BYTES, "YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"is not UTF-8 text (byte {exc.start})", where=str(path)) from None
    return parse_yaml(text, str(path), error)


def check_mapping(doc: Any, keys: tuple[str, ...], error: type[NascoreError], what: str = "top-level key") -> None:
    """``doc`` must be a mapping whose keys are among ``keys``; the error suggests the closest known key."""
    if not isinstance(doc, Mapping):
        raise error(f"expected a mapping with keys {', '.join(keys)}, got {type(doc).__name__}")
    for key in doc:
        if key not in keys:
            raise error(f"unknown {what} {reprlib.repr(key)}{suggest(str(key), keys)}; expected {', '.join(keys)}")


def parse_yaml(text: str, source: str = "<string>", error: type[NascoreError] = DocumentError) -> Any:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - the safe loader
        check_document(data, source, error)
        return data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise error(f"invalid YAML: {exc.problem}", where=where) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", where=source) from None
    except RecursionError:
        raise error("invalid YAML: nested too deeply", where=source) from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise error(f"invalid YAML value: {str(exc)[:120]}", where=source) from None


def check_document(data: Any, source: str, error: type[NascoreError]) -> None:
    """Count values as a consumer walking the document would see them (aliases expanded, self-references
    looping) and stop at MAX_NODES: bounded time and memory whatever the anchors do."""
    stack = [(data, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise error(f"expands to more than {MAX_NODES:,} values (YAML anchors/aliases?); expected a plain "
                        "document", where=source)
        if depth > MAX_DEPTH:
            raise error(f"is nested more than {MAX_DEPTH} levels deep; expected a plain document", where=source)
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item.keys())
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=120,
                     allow_unicode=True)

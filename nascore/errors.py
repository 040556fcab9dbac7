"""Every error a user can cause is a NascoreError: one clear sentence naming where, what was found, what was expected.

The CLI prints ``str(err)`` and exits non-zero; nothing else is caught there, so a bare traceback means a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class NascoreError(Exception):
    """Base class of all errors caused by user input (files, graphs, spaces, plugins, arguments)."""

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        self.message = message   # without the location
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, where: str) -> "NascoreError":
        """Return the same error with an outer location prefixed (file, then node...)."""
        err = type(self).__new__(type(self))
        err.__dict__.update(self.__dict__)
        inner = str(self)
        err.where = where if self.where is None else f"{where}: {self.where}"
        Exception.__init__(err, f"{where}: {inner}")
        return err


class PluginError(NascoreError):
    """A plugin failed to import, raised in a hook, or returned something that is not what the hook expects."""


class DuplicateBlockError(PluginError):
    """Two plugins register the same block name and the user has not said which wins."""


class EstimateMismatch(PluginError):
    """A block's weight-free estimate (its ``infer``) disagrees with the module it builds: other parameters, other
    output shapes, or a module that fails on inputs the estimate accepts."""


class BlockNotFoundError(NascoreError):
    """A graph names a block no plugin provides."""


class ParamError(NascoreError):
    """A block parameter is unknown, missing, of the wrong type or out of range."""


class DocumentError(NascoreError):
    """A YAML document is not readable or not of the expected structure."""


class GraphError(NascoreError):
    """The graph's structure is wrong: cycle, dangling or unreachable node, wrong arity, unknown reference."""


class ShapeError(NascoreError):
    """Shapes do not fit: a node receives inputs it cannot take."""


class SearchSpaceError(NascoreError):
    """A search-space document is malformed."""


class DataError(NascoreError):
    """A data set is missing or malformed."""


class RunError(NascoreError):
    """A run directory is missing, corrupt, or used in a way it cannot be."""


class ClusterError(NascoreError):
    """The Ray cluster cannot be joined, or cannot give what a search or a training asks for (CPUs, GPUs per worker),
    or gave nothing within the time it was allowed."""


class ExportError(NascoreError):
    """An export failed or an exported model is incomplete or tampered with."""


class ChecksumError(ExportError):
    """A file does not match the checksum recorded for it."""


class SupernetError(NascoreError):
    """A space cannot become a weight-sharing supernet, or a supernet and a point or checkpoint do not fit."""


class StrategyError(NascoreError):
    """A search strategy is unknown, misconfigured, or cannot serve the study it is asked for."""


class EvaluatorError(NascoreError):
    """An evaluator name or its behaviour is wrong."""


class TrialFailed(NascoreError):
    """A candidate could not be trained: non-finite loss or out of memory. The search records it and goes on."""

    def __init__(self, message: str, *, where: str | None = None, reason: str = "failed",
                 epoch: int | None = None, step: int | None = None):
        super().__init__(message, where=where)
        self.reason = reason  # "non-finite" | "out of memory" | "no parameters"
        self.epoch = epoch
        self.step = step


def suggest(name: str, known: Iterable[str]) -> str:
    """A ' (did you mean ...?)' hint with the closest known names, or ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class GenotypeError(SearchSpaceError):
    """A genotype kind is unknown, or a genotype expression lists an op or an option its cell does not take."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters: errors stay one line."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:limit]


def raised(what: str | None, exc: BaseException) -> str:
    """``<what> raised <Type>: <first line>``; without ``what``, ``<Type>: <first line>``."""
    said = f"{type(exc).__name__}: {first_line(exc)}"
    return f"{what} raised {said}" if what else said


@contextmanager
def plugin_code(what: str | None, error: type[NascoreError] = PluginError, where: str | None = None, *,
                chain: bool = False) -> Iterator[None]:
    """Run code nascore does not own (a plugin's hook, factory or formula) at the plugin boundary.

    A NascoreError passes through untouched: the code is reporting the user's mistake. Any other exception is a bug
    in that code and becomes ``error(raised(what, exc), where=where)``: one line naming whose code failed, with the
    cause dropped (``chain=False``) or kept as ``__cause__`` (``chain=True``). Callers that locate errors (file,
    node) wrap the ``with`` block in their own ``except NascoreError``.
    """
    try:
        yield
    except NascoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: whatever the plugin raised, reported as its failure
        raise error(raised(what, exc), where=where) from (exc if chain else None)

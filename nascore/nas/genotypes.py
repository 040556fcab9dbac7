"""Cell genotype kinds are plugins: each says how a search space samples one cell's wiring string.

A cell block (``nb201_cell``, ``darts_cell``) takes its wiring as one string parameter, ``genotype``. The plugin that
provides the cell also provides its genotype kind through ``nascore_genotypes()``: the ops the cell accepts, the
ops a search samples from by default, the decisions a genotype is made of (one Optuna categorical each), how the
chosen values compose into the string, and the cell's own parser, formatter and canonical form. The search-space
expression ``{genotype: KIND, ops: [...], OPTION: ...}`` looks the kind up here, so a third-party cell brings its
own kind and the core knows none of them.

Parameter names are paths below the expression's name: ``cell/edge_0_1``, ``normal/node2/op1``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nascore.blocks.spec import Param
from nascore.errors import GenotypeError, NascoreError, PluginError, plugin_code, suggest
from nascore.ext.registry import Registry

EXPRESSION_KEYS = ("genotype", "ops", "name")   # what every genotype expression takes besides its kind's options
_CATEGORICAL = (type(None), bool, int, float, str)   # what an Optuna categorical may offer


@dataclass(frozen=True)
class Decision:
    """One categorical choice of a genotype: its ``name`` below the expression's path, and what it chooses from."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class GenotypeSpec:
    """One genotype kind: how a search space samples the ``genotype`` string of a cell block.

    ``ops``: every operation the cell accepts (what ``ops:`` in a space may list). ``default_ops``: what a search
    samples from when ``ops:`` is not given (default: all of ``ops``). ``decisions(ops, **options)``: the
    categorical choices of one genotype, in sampling order. ``compose(values, **options)``: the genotype string for
    one chosen value per decision, in that order. ``parse(str)`` / ``format(parsed)``: the cell's own reader and
    writer (``format(parse(s))`` is the standard spelling of ``s``); ``canonical(str)``: one representative of
    every class of genotypes that compute the same function (None: only the spelling is normalised).
    ``options``: what else the expression takes (DARTS' ``nodes``), typed and ranged like block parameters.
    ``shared_slot(tensor_name, genotype)``: the name of the cell's tensor ``tensor_name`` by edge (the same edge gets
    the same name in every genotype), so a one-shot supernet keeps one tensor per (edge, operation) and serves every
    genotype; None: the supernet refuses the choice. ``covering(ops, **options)``: value lists (one value per
    decision, in order) whose genotypes together hold every (edge, operation) ``shared_slot`` names, for the
    supernet to find each shared tensor's shape; None: every option of every decision once, which is enough where
    each decision chooses one edge's operation (NAS-Bench-201) but not where an input and an operation are chosen
    apart (DARTS).
    """

    name: str
    ops: tuple[str, ...]
    decisions: Callable[..., Sequence[Decision]]
    compose: Callable[..., str]
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    default_ops: tuple[str, ...] | None = None
    canonical: Callable[[str], str] | None = None
    options: tuple[Param, ...] = ()
    doc: str = ""
    aliases: tuple[str, ...] = ()
    shared_slot: Callable[[str, str], str] | None = None
    covering: Callable[..., Sequence[Sequence[Any]]] | None = None

    def __post_init__(self) -> None:
        # A malformed spec raises here, inside the plugin's hook: the registry reports the plugin by name.
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a genotype kind needs a non-empty name, got {self.name!r:.40}")
        object.__setattr__(self, "ops", _op_names(self.ops, f"genotype kind {self.name!r}: ops"))
        defaults = self.ops if self.default_ops is None else _op_names(
            self.default_ops, f"genotype kind {self.name!r}: default_ops")
        stray = [o for o in defaults if o not in self.ops]
        if stray:
            raise ValueError(f"genotype kind {self.name!r}: default op {stray[0]!r} is not one of its ops")
        object.__setattr__(self, "default_ops", defaults)
        for role in ("decisions", "compose", "parse", "format"):
            if not callable(getattr(self, role)):
                raise TypeError(f"genotype kind {self.name!r}: {role} must be callable")
        for role in ("canonical", "shared_slot", "covering"):
            if getattr(self, role) is not None and not callable(getattr(self, role)):
                raise TypeError(f"genotype kind {self.name!r}: {role} must be callable or None")
        object.__setattr__(self, "options", tuple(self.options))
        for p in self.options:
            if not isinstance(p, Param) or p.name in EXPRESSION_KEYS:
                raise ValueError(f"genotype kind {self.name!r}: options must be Params not named "
                                 f"{', '.join(EXPRESSION_KEYS)}, got {p!r:.60}")

    def resolve(self, ops: Any = None, options: Mapping[str, Any] | None = None,
                ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """The ops to sample from and the options, checked and completed with defaults.

        Raises GenotypeError naming an op the cell does not accept (with the accepted ones), an unknown option (with
        the accepted ones) or an ill-typed option value.
        """
        if ops is None:
            chosen = self.default_ops
        else:
            if (not isinstance(ops, (list, tuple)) or not ops or not all(isinstance(o, str) for o in ops)):
                raise GenotypeError(f"genotype ops must be a non-empty list of op names, got {reprlib.repr(ops)}")
            unknown = [o for o in ops if o not in self.ops]
            if unknown:
                raise GenotypeError(f"unknown {self.name} op {unknown[0]!r:.40}{suggest(unknown[0], self.ops)}; the "
                                    f"cell accepts {', '.join(self.ops)}")
            twice = [o for i, o in enumerate(ops) if o in ops[:i]]
            if twice:
                raise GenotypeError(f"genotype ops list {twice[0]!r} twice")
            chosen = tuple(ops)
        known = {p.name: p for p in self.options}
        checked: dict[str, Any] = {}
        for key, value in dict(options or {}).items():
            if key not in known:
                accepted = ", ".join(sorted(set(EXPRESSION_KEYS) - {"genotype"} | set(known)))
                raise GenotypeError(f"unknown option {str(key)!r:.40} for genotype {self.name}"
                                    f"{suggest(str(key), known)}; it takes {accepted}")
            try:
                checked[key] = known[key].check(value)
            except NascoreError as err:
                inner = str(err)[len(err.where) + 2:] if err.where else str(err)
                raise GenotypeError(f"genotype {self.name} option {key!r}: {inner}") from None
        for p in self.options:
            if p.name not in checked:
                if p.required:
                    raise GenotypeError(f"genotype {self.name} needs option {p.name!r} ({p.describe()})")
                checked[p.name] = p.default
        return chosen, checked

    def plan(self, ops: tuple[str, ...], options: Mapping[str, Any]) -> tuple[Decision, ...]:
        """The decisions of one genotype over ``ops`` (from :meth:`resolve`), checked; a bad one is the plugin's bug."""
        with plugin_code("decisions()", where=f"genotype kind {self.name!r}"):
            decisions = tuple(self.decisions(ops, **options))
        names = set()
        for d in decisions:
            if (not isinstance(d, Decision) or not isinstance(d.name, str) or not d.name or d.name in names
                    or not isinstance(d.choices, tuple) or not d.choices
                    or not all(isinstance(c, _CATEGORICAL) for c in d.choices)):
                raise PluginError(f"decisions() returned {d!r:.80}; expected Decisions with unique names and "
                                  f"non-empty tuples of plain choices", where=f"genotype kind {self.name!r}")
            names.add(d.name)
        if not decisions:
            raise PluginError("decisions() returned no decision", where=f"genotype kind {self.name!r}")
        return decisions

    def cover(self, ops: tuple[str, ...], options: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``{decision name: value}`` per genotype of the kind's covering (``covering``; by default each option of
        every decision once, the i-th genotype taking every decision's i-th option), checked against the decisions:
        a bad one is the plugin's bug."""
        decisions = self.plan(ops, options)
        if self.covering is None:
            width = max(len(d.choices) for d in decisions)
            return [{d.name: d.choices[i % len(d.choices)] for d in decisions} for i in range(width)]
        with plugin_code("covering()", where=f"genotype kind {self.name!r}"):
            rows = [list(row) for row in self.covering(ops, **options)]
        for row in rows:
            if len(row) != len(decisions) or any(v not in d.choices for v, d in zip(row, decisions)):
                raise PluginError(f"covering() returned {row!r:.80}; expected one of each decision's choices for "
                                  f"{[d.name for d in decisions]}", where=f"genotype kind {self.name!r}")
        if not rows:
            raise PluginError("covering() returned no genotype", where=f"genotype kind {self.name!r}")
        return [{d.name: v for d, v in zip(decisions, row)} for row in rows]

    def sample(self, suggest_categorical: Callable[[str, tuple[Any, ...]], Any], prefix: str, ops: Any = None,
               **options: Any) -> str:
        """One genotype string, asking ``suggest_categorical(f"{prefix}/{decision}", choices)`` once per decision
        (``trial.suggest_categorical`` of an Optuna trial)."""
        ops, options = self.resolve(ops, options)
        values = [suggest_categorical(f"{prefix}/{d.name}", d.choices) for d in self.plan(ops, options)]
        return self.compose(values, **options)


def _op_names(ops: Any, what: str) -> tuple[str, ...]:
    if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
        raise ValueError(f"{what} must be a non-empty sequence of op names, got {ops!r:.60}")
    ops = tuple(ops)
    if not all(isinstance(o, str) and o for o in ops) or len(set(ops)) != len(ops):
        raise ValueError(f"{what} must be distinct non-empty strings, got {ops!r:.80}")
    return ops


GENOTYPES: Registry[GenotypeSpec] = Registry("genotype kind", "nascore_genotypes", GenotypeSpec, GenotypeError,
                                             plural="genotype kinds")


def get_genotype(name: Any) -> GenotypeSpec:
    """The genotype kind registered under ``name`` (or an alias); an unknown one raises GenotypeError listing the
    known kinds and the closest names."""
    if not isinstance(name, str) or not name:
        raise GenotypeError(f"genotype kind must be a name ({', '.join(GENOTYPES.names())}), got "
                            f"{reprlib.repr(name)}")
    try:
        return GENOTYPES.get(name)
    except GenotypeError:
        known = GENOTYPES.names()
        raise GenotypeError(f"unknown genotype kind {name!r:.40}{suggest(name, known)}; known kinds: "
                            f"{', '.join(known) or 'none registered'} (a cell plugin adds one through "
                            f"nascore_genotypes())") from None


__all__ = ["Decision", "GenotypeSpec", "GENOTYPES", "get_genotype"]

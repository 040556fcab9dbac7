"""The search-space language: a graph document whose values may be choices, one Optuna ``suggest_*`` per choice.

    graph:
      input: [1, 8, 8]
      nodes:
        - {name: stem, block: conv_bn_act, out: {int: [8, 32], step: 8}}
        - name: stage1
          block: mbconv
          repeat: {int: [1, 3]}                         # depth
          kernel: {choice: [3, 5, 7]}
          se_ratio: {choice: [0.0, 0.25]}
        - name: stage2
          block:                                        # a block choice; each option brings its own parameters
            choice:
              mbconv: {out: 32, stride: 2, expand: {choice: [3, 6]}}
              resnet_basic: {out: 32, stride: 2}
        - {name: cell, block: nb201_cell, genotype: {genotype: nb201}}
    scale: {width: {float: [0.5, 1.5], step: 0.25}}      # global multipliers (EfficientNet rounding)
    compound: {phi: 1, alpha: {float: [1.0, 1.5], step: 0.05}, beta: {float: [1.0, 1.3], step: 0.05}}

A space is a pure function of a trial (Optuna's define-by-run, Ray's lesson): no computation while sampling.
Parameter names are paths: ``stage1/kernel``, ``stage2/block``, ``stage2/mbconv/expand``, ``scale/width``.
Everything is checked when the file loads: expression syntax, block names, and parameter names against each
block's schema, so a typo fails before the first trial, naming the file, node and parameter.

Genotype kinds (``{genotype: nb201}``, ``{genotype: darts, nodes: 4}``) belong to the cell plugins
(:mod:`nascore.nas.genotypes`): the space only asks the kind for its decisions, one categorical each.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nascore.blocks.registry import get_block
from nascore.graph.document import TOP_KEYS, graph_from_dict
from nascore.errors import GenotypeError, NascoreError, SearchSpaceError, suggest
from nascore.graph.core import Graph
from nascore.blocks.spec import RESERVED_KEYS, is_number
from nascore.nas.genotypes import EXPRESSION_KEYS, Decision, GenotypeSpec, get_genotype
from nascore.io.yamlio import check_mapping, read_yaml

SPACE_KEYS = ("name", "description", "graph", "scale", "compound", "search")
PRIMITIVE = (type(None), bool, int, float, str)
MAX_GRID_VALUES = 10_000  # a finer axis is treated as continuous: grid search needs a listable space


# -- expressions ----------------------------------------------------------------------------------------------------


class Expr:
    """One searchable value; ``sample`` makes the ``suggest_*`` calls, ``grid`` lists finite values.

    An expression given a ``name`` is shared: every place that uses the name gets the same value in a trial
    (one genotype for all normal cells, one kernel for all stages).
    """

    shared_name: str | None = None

    def sample(self, trial: Any, name: str) -> Any:
        raise NotImplementedError

    def grid(self, name: str) -> dict[str, list[Any]] | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(Expr):
    options: tuple[Any, ...]

    def _encoded(self) -> tuple[Any, ...]:
        # Optuna's categorical takes only None/bool/int/float/str; lists (kernel [1, 7]) travel as JSON text.
        return tuple(o if isinstance(o, PRIMITIVE) else json.dumps(o) for o in self.options)

    def sample(self, trial, name):
        value = trial.suggest_categorical(name, self._encoded())
        index = self._encoded().index(value)
        return self.options[index]

    def grid(self, name):
        return {name: list(self._encoded())}

    def describe(self):
        return "choice of " + ", ".join(json.dumps(o) for o in self.options)


@dataclass(frozen=True)
class IntRange(Expr):
    low: int
    high: int
    step: int = 1
    log: bool = False

    def sample(self, trial, name):
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def grid(self, name):
        if (self.high - self.low) // self.step >= MAX_GRID_VALUES:
            return None
        return {name: list(range(self.low, self.high + 1, self.step))}

    def describe(self):
        return f"int in [{self.low}, {self.high}] step {self.step}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class FloatRange(Expr):
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def sample(self, trial, name):
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def grid(self, name):
        if self.step is None or (self.high - self.low) / self.step >= MAX_GRID_VALUES:
            return None
        n = int(round((self.high - self.low) / self.step))
        return {name: [round(self.low + i * self.step, 10) for i in range(n + 1)]}

    def describe(self):
        return f"float in [{self.low:g}, {self.high:g}]" + (f" step {self.step:g}" if self.step else "") + (
            " (log)" if self.log else "")


@dataclass(frozen=True)
class Genotype(Expr):
    """A cell genotype of a plugin-provided kind: one categorical per decision the kind declares (NAS-Bench-201: one
    op per edge; DARTS: two inputs and two ops per node), composed into the cell's genotype string by the kind."""

    spec: GenotypeSpec
    ops: tuple[str, ...]
    options: tuple[tuple[str, Any], ...] = ()
    decisions: tuple[Decision, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, spec: GenotypeSpec, ops: Any = None, options: Mapping[str, Any] | None = None) -> "Genotype":
        """The expression for ``spec`` over ``ops`` (default: the kind's) with ``options``, checked."""
        ops, checked = spec.resolve(ops, options)
        return cls(spec, ops, tuple(sorted(checked.items())), spec.plan(ops, checked))

    @property
    def kind(self) -> str:
        return self.spec.name

    def sample(self, trial, name):
        values = [trial.suggest_categorical(f"{name}/{d.name}", d.choices) for d in self.decisions]
        return self.spec.compose(values, **dict(self.options))

    def grid(self, name):
        return {f"{name}/{d.name}": list(d.choices) for d in self.decisions}

    def describe(self):
        return f"{self.kind} genotype over {', '.join(self.ops)}"


def _finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _plain_value(value: Any, depth: int = 0) -> bool:
    """What a choice may offer: JSON-like scalars, or short lists of them (a kernel [1, 7])."""
    if isinstance(value, (bool, int, str)) or value is None:
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, list) and depth < 2 and all(_plain_value(v, depth + 1) for v in value)


def _bounds(value: Any) -> tuple[float | None, float | None]:
    """Smallest and largest number an expression (or plain value) can take; (None, None) if not numeric."""
    if _finite(value):
        return float(value), float(value)
    if isinstance(value, (IntRange, FloatRange)):
        return float(value.low), float(value.high)
    if isinstance(value, Choice) and all(_finite(o) for o in value.options):
        return float(min(value.options)), float(max(value.options))
    return None, None


def _named(expr: Expr, name: Any, where: str) -> Expr:
    if name is None:
        return expr
    if not isinstance(name, str) or not name:
        raise SearchSpaceError(f"name must be a non-empty string, got {name!r:.40}", where=where)
    object.__setattr__(expr, "shared_name", name)
    return expr


def parse_expr(value: Any, where: str) -> Any:
    """A plain value stays itself; ``{choice|int|float|genotype: ...}`` becomes an Expr; anything else is an error."""
    if not isinstance(value, Mapping):
        if isinstance(value, list):
            for v in value:
                if isinstance(v, Mapping):
                    raise SearchSpaceError("choices cannot be nested inside a list value", where=where)
        return value
    kinds = [k for k in ("choice", "int", "float", "genotype") if k in value]
    if len(kinds) != 1:
        raise SearchSpaceError(f"expected one of choice / int / float / genotype, got keys {sorted(map(str, value))}",
                               where=where)
    kind = kinds[0]
    if kind == "genotype":
        return _named(_parse_genotype(value, where), value.get("name"), where)
    allowed = {"choice": {"choice"}, "int": {"int", "step", "log"}, "float": {"float", "step", "log"}}[kind] | {"name"}
    return _named(_parse_body(value, kind, allowed, where), value.get("name"), where)


def _parse_genotype(value: Mapping[str, Any], where: str) -> Genotype:
    """``{genotype: KIND, ops: [...], OPTION: ...}``: the kind comes from the cell plugins (GENOTYPES)."""
    try:
        spec = get_genotype(value["genotype"])
        if "ops" in value and not isinstance(value["ops"], list):
            raise GenotypeError(f"genotype ops must be a list of op names, got {reprlib.repr(value['ops'])}")
        options = {k: v for k, v in value.items() if k not in EXPRESSION_KEYS}
        return Genotype.of(spec, value.get("ops"), options)
    except NascoreError as err:
        raise err.located(where) from None


def _parse_body(value: Mapping[str, Any], kind: str, allowed: set[str], where: str) -> Expr:
    extra = set(value) - allowed
    if extra:
        raise SearchSpaceError(f"unknown option {sorted(map(str, extra))[0]!r} for {kind}; expected "
                               f"{', '.join(sorted(allowed - {kind})) or 'none'}", where=where)
    body = value[kind]
    if kind == "choice":
        if not isinstance(body, list) or not body:
            raise SearchSpaceError(f"choice needs a non-empty list, got {body!r:.60}", where=where)
        if not all(_plain_value(o) for o in body):
            raise SearchSpaceError(f"choice options must be plain values (numbers, strings, booleans, null, or "
                                   f"lists of them), got {reprlib.repr(body)}", where=where)
        encoded = [o if isinstance(o, PRIMITIVE) else json.dumps(o) for o in body]
        if len(set(map(repr, encoded))) != len(encoded):
            raise SearchSpaceError(f"choice lists a value twice: {body!r:.60}", where=where)
        return Choice(tuple(body))
    number = (int,) if kind == "int" else (int, float)
    if (not isinstance(body, list) or len(body) != 2
            or not all(isinstance(b, number) and not isinstance(b, bool) and _finite(b) for b in body)):
        raise SearchSpaceError(f"{kind} needs [low, high] of finite {kind}s, got {reprlib.repr(body)}",
                               where=where)
    if any(abs(b) > 1e15 for b in body):
        raise SearchSpaceError(f"{kind} range {reprlib.repr(body)} is out of any sensible scale", where=where)
    low, high = body
    if low > high:
        raise SearchSpaceError(f"{kind} range [{low}, {high}] has low > high", where=where)
    log = value.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise SearchSpaceError(f"log must be true/false and needs low > 0, got log={log!r}, low={low}",
                               where=where)
    step = value.get("step", 1 if kind == "int" else None)
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or not _finite(step)
                             or step <= 0):
        raise SearchSpaceError(f"step must be a positive {kind}, got {step!r}", where=where)
    if log and step not in (None, 1):
        raise SearchSpaceError("log ranges take no step", where=where)
    if kind == "int":
        return IntRange(low, high, step, log)
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise SearchSpaceError(f"step {step} does not divide [{low}, {high}]", where=where)
    return FloatRange(float(low), float(high), None if step is None else float(step), log)


# -- nodes ----------------------------------------------------------------------------------------------------------


@dataclass
class NodeTemplate:
    """One entry of the template: fixed parts, and expressions to sample."""

    name: str
    block: str | None                               # fixed block, or None when ``options`` holds a choice
    options: dict[str, dict[str, Any]] = field(default_factory=dict)   # block -> its own params (may hold Exprs)
    params: dict[str, Any] = field(default_factory=dict)               # shared params (may hold Exprs)
    repeat: Any = None
    inputs: Any = None

    def sample(self, trial) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name}
        if self.block is not None:
            block, own = self.block, {}
        else:
            block = trial.suggest_categorical(f"{self.name}/block", tuple(self.options))
            own = {k: _sample(v, trial, f"{self.name}/{block}/{k}") for k, v in self.options[block].items()}
        entry["block"] = block
        if self.inputs is not None:
            entry["inputs"] = self.inputs
        if self.repeat is not None:
            entry["repeat"] = _sample(self.repeat, trial, f"{self.name}/repeat")
        for key, value in self.params.items():
            entry[key] = _sample(value, trial, f"{self.name}/{key}")
        entry.update(own)
        return entry

    def exprs(self) -> list[tuple[str, Any]]:
        """(parameter path, expression) of everything this node samples, in sampling order."""
        rows: list[tuple[str, Any]] = []
        if self.block is None:
            rows.append((f"{self.name}/block", Choice(tuple(self.options))))
        rows.append((f"{self.name}/repeat", self.repeat))
        rows += [(f"{self.name}/{k}", v) for k, v in self.params.items()]
        rows += [(f"{self.name}/{b}/{k}", v) for b, own in self.options.items() for k, v in own.items()]
        return [(path, value) for path, value in rows if isinstance(value, Expr)]


def _sample(value: Any, trial: Any, name: str) -> Any:
    if not isinstance(value, Expr):
        return value
    return value.sample(trial, value.shared_name or name)


# -- the space ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compound:
    """EfficientNet compound scaling: depth alpha^phi, width beta^phi, resolution gamma^phi, with
    alpha * beta^2 * gamma^2 = target; alpha and beta are searched, gamma follows from the constraint."""

    phi: float
    alpha: Any
    beta: Any
    target: float = 2.0

    def sample(self, trial) -> tuple[float, float, float]:
        alpha = _sample(self.alpha, trial, "compound/alpha")
        beta = _sample(self.beta, trial, "compound/beta")
        return alpha, beta, math.sqrt(self.target / (alpha * beta * beta))


class SearchSpace:
    """A loaded, checked search space; ``sample(trial)`` returns a concrete, validated Graph."""

    def __init__(self, doc: Mapping[str, Any], source: str = "<dict>"):
        self.source = source
        try:
            self._parse(doc)
        except NascoreError as err:
            raise (err if err.where and err.where.startswith(source) else err.located(source)) from None

    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        return cls(read_yaml(path, SearchSpaceError), str(path))

    # parsing -------------------------------------------------------------------------------------------------------

    def _parse(self, doc: Any) -> None:
        check_mapping(doc, SPACE_KEYS, SearchSpaceError)
        self.name = doc.get("name", Path(self.source).stem)
        self.description = doc.get("description", "")
        if not isinstance(doc.get("search") or {}, Mapping):
            raise SearchSpaceError("'search' must be a mapping of run settings")
        self.settings: dict[str, Any] = dict(doc.get("search") or {})
        graph_doc = doc.get("graph")
        if isinstance(graph_doc, Mapping) and set(graph_doc) == {"file"}:
            graph_doc = self._read_base(graph_doc["file"])
        # The self-contained document (base graph file inlined): what a run directory keeps.
        self.document = {**doc, "graph": graph_doc}
        if not isinstance(graph_doc, Mapping):
            raise SearchSpaceError("'graph' must be a graph document (name, input, nodes, outputs) or {file: PATH}")
        unknown = [k for k in graph_doc if k not in TOP_KEYS]
        if unknown:
            raise SearchSpaceError(f"unknown graph key {unknown[0]!r}{suggest(str(unknown[0]), TOP_KEYS)}",
                                   where="graph")
        self.graph_top = {k: v for k, v in graph_doc.items() if k != "nodes"}
        self.graph_top.setdefault("name", self.name)
        nodes = graph_doc.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise SearchSpaceError("'nodes' must be a non-empty list", where="graph")
        self.nodes = [self._parse_node(entry, i) for i, entry in enumerate(nodes)]
        names = [n.name for n in self.nodes]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise SearchSpaceError("is defined twice", where=f"node {sorted(duplicates)[0]!r}")
        scale = doc.get("scale") or {}
        if not isinstance(scale, Mapping) or set(scale) - {"width", "depth", "resolution"}:
            raise SearchSpaceError(f"'scale' takes width, depth and resolution, got {scale!r:.60}")
        self.scale = {k: parse_expr(v, f"scale/{k}") for k, v in scale.items()}
        for key, value in self.scale.items():
            low, high = _bounds(value)
            if low is None or not 0 < low <= high <= 16:
                raise SearchSpaceError(f"must be a multiplier (number, range or choice) in (0, 16], got "
                                       f"{reprlib.repr(scale[key])}", where=f"scale/{key}")
        self.compound = self._parse_compound(doc.get("compound"))
        self.choices()   # shared names must agree on their domain

    def _read_base(self, file: Any) -> Any:
        if not isinstance(file, str):
            raise SearchSpaceError(f"graph file must be a path, got {file!r:.40}", where="graph")
        base = Path(self.source).parent / file if self.source != "<dict>" else Path(file)
        return read_yaml(base, SearchSpaceError)

    def _parse_node(self, entry: Any, index: int) -> NodeTemplate:
        where = f"nodes[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise SearchSpaceError("expected a mapping with a 'name' and a 'block'", where=where)
        name = entry["name"]
        where = f"node {name!r}"
        block = entry.get("block")
        params = {k: parse_expr(v, f"{where}: parameter {k!r}") for k, v in entry.items() if k not in RESERVED_KEYS}
        repeat = parse_expr(entry["repeat"], f"{where}: repeat") if "repeat" in entry else None
        if isinstance(repeat, Expr) and not isinstance(repeat, (IntRange, Choice)):
            raise SearchSpaceError("repeat must be an int, an int range or a choice of ints", where=where)
        node = NodeTemplate(name, None, {}, params, repeat, entry.get("inputs"))
        if isinstance(block, str):
            node.block = block
            self._check_params(where, block, params)
        elif isinstance(block, Mapping) and set(block) == {"choice"}:
            options = block["choice"]
            if isinstance(options, list) and options and all(isinstance(o, str) for o in options):
                options = {o: {} for o in options}
            if not isinstance(options, Mapping) or not options:
                raise SearchSpaceError("a block choice lists block names, or maps block names to their own "
                                       "parameters", where=f"{where}: block")
            for option, own in options.items():
                if not isinstance(option, str):
                    raise SearchSpaceError(f"block choice options are block names, got {reprlib.repr(option)}",
                                           where=f"{where}: block")
                own = own or {}
                if not isinstance(own, Mapping):
                    raise SearchSpaceError(f"parameters of option {option!r} must be a mapping", where=where)
                node.options[option] = {k: parse_expr(v, f"{where}: {option}: parameter {k!r}")
                                        for k, v in own.items()}
                self._check_params(where, option, {**params, **node.options[option]})
        else:
            raise SearchSpaceError(f"'block' must be a block name or {{choice: ...}}, got {block!r:.60}", where=where)
        return node

    def _check_params(self, where: str, block: str, params: Mapping[str, Any]) -> None:
        try:
            spec = get_block(block)
        except NascoreError as err:
            raise err.located(where) from None
        for key in params:
            if spec.param(key) is None:
                raise SearchSpaceError(f"block {spec.name!r} has no parameter {key!r}"
                                       f"{suggest(key, [p.name for p in spec.params])}", where=where)

    def _parse_compound(self, value: Any) -> Compound | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or set(value) - {"phi", "alpha", "beta", "target"}:
            raise SearchSpaceError("'compound' takes phi, alpha, beta and target")
        phi = value.get("phi", 1)
        target = value.get("target", 2.0)
        for key, v, high in (("phi", phi, 16), ("target", target, 64)):
            if not _finite(v) or not 0 < v <= high:
                raise SearchSpaceError(f"must be a number in (0, {high}], got {reprlib.repr(v)}",
                                       where=f"compound/{key}")
        alpha = parse_expr(value.get("alpha", 1.2), "compound/alpha")
        beta = parse_expr(value.get("beta", 1.1), "compound/beta")
        for key, expr in (("alpha", alpha), ("beta", beta)):
            low, high = _bounds(expr)
            if low is None or not 1.0 <= low <= high <= 4.0:
                raise SearchSpaceError(f"must be a number, range or choice of numbers in [1, 4], got "
                                       f"{reprlib.repr(value.get(key))}", where=f"compound/{key}")
        return Compound(float(phi), alpha, beta, float(target))

    # sampling ------------------------------------------------------------------------------------------------------

    def sample_document(self, trial: Any) -> tuple[dict[str, Any], dict[str, float]]:
        """The concrete graph document for ``trial``, and the scaling it asks for."""
        doc = dict(self.graph_top)
        doc["nodes"] = [node.sample(trial) for node in self.nodes]
        scaling = {k: _sample(v, trial, f"scale/{k}") for k, v in self.scale.items()}
        if self.compound is not None:
            alpha, beta, gamma = self.compound.sample(trial)
            phi = self.compound.phi
            scaling["depth"] = scaling.get("depth", 1.0) * alpha ** phi
            scaling["width"] = scaling.get("width", 1.0) * beta ** phi
            scaling["resolution"] = scaling.get("resolution", 1.0) * gamma ** phi
        return doc, scaling

    def sample(self, trial: Any) -> Graph:
        """A concrete, validated Graph for ``trial``; an invalid sample raises a NascoreError saying why."""
        doc, scaling = self.sample_document(trial)
        graph = graph_from_dict(doc, f"{self.source} (sample)")
        if scaling:
            resolution = scaling.get("resolution")
            side = None
            if resolution is not None:
                side = tuple(max(1, int(round(d * resolution))) for d in graph.input_shape[1:])
            try:
                graph = graph.scale(width=scaling.get("width", 1.0), depth=scaling.get("depth", 1.0),
                                    resolution=side)
            except NascoreError as err:
                raise err.located(f"{self.source} (sample)") from None
        graph.analyse()
        return graph

    def fixed(self, params: Mapping[str, Any]) -> Graph:
        """Replay a chosen architecture (Optuna's FixedTrial): the graph a set of sampled values stands for."""
        import optuna

        return self.sample(optuna.trial.FixedTrial(dict(params)))

    def choices(self) -> list[tuple[str, Expr]]:
        """(parameter name, expression) of every searchable value, in sampling order; shared names once."""
        rows: dict[str, Expr] = {}
        paths = [p for node in self.nodes for p in node.exprs()]
        paths += [(f"scale/{k}", v) for k, v in self.scale.items() if isinstance(v, Expr)]
        if self.compound is not None:
            paths += [(f"compound/{k}", getattr(self.compound, k)) for k in ("alpha", "beta")
                      if isinstance(getattr(self.compound, k), Expr)]
        for path, expr in paths:
            name = expr.shared_name or path
            if name in rows and rows[name] != expr:
                raise SearchSpaceError(f"the shared name {name!r} is used for {rows[name].describe()} and for "
                                       f"{expr.describe()}; a shared choice must have one domain", where=path)
            rows.setdefault(name, expr)
        return list(rows.items())

    def grid(self) -> dict[str, list[Any]] | None:
        """Every parameter's finite values, or None when some parameter is continuous (or too finely divided)."""
        grid: dict[str, list[Any]] = {}
        for name, expr in self.choices():
            part = expr.grid(name)
            if part is None:
                return None
            grid.update(part)
        return grid

    def describe(self) -> list[tuple[str, str]]:
        """(parameter name, domain) for every searchable value, in sampling order; shared names once."""
        return [(name, expr.describe()) for name, expr in self.choices()]


__all__ = ["SearchSpace", "Choice", "IntRange", "FloatRange", "Genotype", "parse_expr"]

"""Paths through a search space without Optuna: uniform, fair (FairNAS) and covering samples.

A search space is a pure function of a trial (``suggest_categorical`` / ``suggest_int`` / ``suggest_float``), so a
small trial look-alike that decides each value by a rule turns the space into whatever sampler one-shot training
needs. Every rule here is a pure function of (seed, step, decision name): all ranks of a distributed run draw the
same path in a step, and a resumed run continues the same sequence with no sampler state to save.
"""

from __future__ import annotations

import hashlib
import json
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from nascore.graph.core import Graph
from nascore.blocks.spec import is_number

Decide = Callable[[str, Sequence[Any] | None, tuple[float, float, bool] | None], Any]


def is_elastic(options: Sequence[Any]) -> bool:
    """Numeric options (kernel, expansion, width, depth, SE ratio) share one tensor sliced to size; anything else
    (a block name, an activation, a genotype) picks its own weights."""
    return all(is_number(o) for o in options)


class PathTrial:
    """The part of Optuna's trial API a space uses, deciding each value with ``decide``; shared names (the same
    decision used in several places) get one value. ``params`` holds the decisions, as Optuna would record them."""

    def __init__(self, decide: Decide):
        self._decide = decide
        self.params: dict[str, Any] = {}
        self.options: dict[str, tuple[Any, ...]] = {}

    def _take(self, name: str, options: Sequence[Any] | None, interval=None) -> Any:
        if name not in self.params:
            if options is not None:
                self.options[name] = tuple(options)
            self.params[name] = self._decide(name, options, interval)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._take(name, tuple(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._take(name, tuple(range(low, high + 1, step)))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        if step is None:
            return self._take(name, None, (low, high, log))
        n = int(round((high - low) / step))
        return self._take(name, tuple(round(low + i * step, 10) for i in range(n + 1)))


def _rng(*key: Any) -> random.Random:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _continuous(rng: random.Random, interval: tuple[float, float, bool]) -> float:
    low, high, log = interval
    return math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)


def uniform_rule(seed: int, step: int) -> Decide:
    """Single-path one-shot (Guo et al.): every decision uniform and independent in every step."""
    def decide(name, options, interval):
        rng = _rng(seed, step, name)
        return rng.choice(list(options)) if options is not None else _continuous(rng, interval)
    return decide


def fair_rule(seed: int, step: int) -> Decide:
    """FairNAS's strict fairness per decision: over every n consecutive steps a decision with n options takes each
    option exactly once (a fresh random order each round)."""
    def decide(name, options, interval):
        if options is None:
            return _continuous(_rng(seed, step, name), interval)
        n = len(options)
        order = list(range(n))
        _rng(seed, step // n, name).shuffle(order)
        return options[order[step % n]]
    return decide


def sample_path(space: Any, rule: Decide) -> tuple[Graph, dict[str, Any]]:
    trial = PathTrial(rule)
    graph = space.sample(trial)
    return graph, trial.params


def covering_paths(space: Any, limit: int = 256) -> list[tuple[Graph, dict[str, Any]]]:
    """Points of the space whose weights together hold every tensor any point needs, at its largest size.

    Structural decisions (block, activation...) take every combination while there are at most ``limit``, else
    each option at least once; with each, elastic decisions take their largest values, then their smallest (all,
    and one at a time). A cell genotype's decisions follow its kind's covering (``GenotypeSpec.cover``), all
    genotypes of the space side by side. Points the space rejects are skipped.
    """
    structural: dict[str, tuple[Any, ...]] = {}
    elastic: dict[str, tuple[Any, ...]] = {}
    genotypes = _genotype_covering(space)

    def rule_for(fixed: dict[str, Any]) -> Decide:
        def decide(name, options, interval):
            if name in fixed:
                return fixed[name]
            if name in genotypes[0]:
                return genotypes[0][name]
            if options is None:
                elastic.setdefault(name, (interval[0], interval[1]))
                return interval[1]
            if is_elastic(options):
                elastic.setdefault(name, tuple(options))
                return max(options)
            structural.setdefault(name, tuple(options))
            return options[0]
        return decide

    points: dict[str, tuple[Graph, dict[str, Any]]] = {}
    errors: list[Exception] = []

    def visit(fixed: dict[str, Any]) -> None:
        try:
            graph, params = sample_path(space, rule_for(fixed))
        except Exception as exc:  # noqa: BLE001 - an invalid combination is skipped; none valid is an error below
            errors.append(exc)
            return
        points.setdefault(json.dumps(graph.to_dict(), sort_keys=True, default=str), (graph, params))

    visit({})
    assignments: list[dict[str, Any]] = [{}]
    seen: set[tuple[str, ...]] = set()
    while tuple(structural) not in seen:              # conditional decisions appear as options are taken
        seen.add(tuple(structural))
        names = list(structural)
        if math.prod(len(structural[n]) for n in names) <= limit:
            assignments = [dict(zip(names, values)) for values in itertools.product(*structural.values())]
        else:
            assignments = [{name: value} for name in names for value in structural[name]]
        for fixed in assignments:
            visit(fixed)
    # A tensor may exist only below the largest values (a projection shortcut when widths differ) or shrink as a
    # value grows (more groups): every structural option is also visited with the elastic values at their
    # smallest, all together and one at a time (each option once, not every combination: the product of all
    # structural assignments times the elastic decisions made a large space's supernet take minutes to set up).
    for fixed in [{}] + [{name: value} for name, options in structural.items() for value in options]:
        smallest = {name: min(options) for name, options in elastic.items()}
        visit({**smallest, **fixed})
        for name, low in smallest.items():
            visit({name: low, **fixed})
    for row in genotypes[1:]:
        visit(row)
        visit({**{name: min(options) for name, options in elastic.items()}, **row})
    if not points:
        raise errors[0]
    return list(points.values())


def _genotype_covering(space: Any) -> list[dict[str, Any]]:
    """``{trial parameter: value}`` rows that visit every genotype kind's covering, all genotype choices of the
    space side by side (row i takes each one's i-th genotype, cycling the shorter); ``[{}]`` without genotypes."""
    from nascore.nas.space import Genotype

    tables = [[{f"{name}/{k}": v for k, v in row.items()} for row in expr.spec.cover(expr.ops, dict(expr.options))]
              for name, expr in space.choices() if isinstance(expr, Genotype)]
    width = max((len(t) for t in tables), default=1)
    return [{k: v for t in tables for k, v in t[i % len(t)].items()} for i in range(width)]

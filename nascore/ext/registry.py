"""Name registries filled by one collected hook of every plugin (blocks, strategies, data sets, ...)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from nascore.errors import DuplicateBlockError, NascoreError, raised, suggest
from nascore.ext.manager import PluginFailure, env_list, lock, plugin_failures, plugin_manager, on_change

T = TypeVar("T")


@dataclass
class _Loaded(Generic[T]):
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


class Registry(Generic[T]):
    """Name -> item, filled lazily by one collected hook of every plugin.

    ``kind`` words the errors ("block", "strategy"); ``check`` validates one returned item (raise TypeError or
    ValueError to reject it). Duplicate names across plugins are conflicts that fail on lookup, naming both plugins,
    unless ``prefer`` (or ``NASCORE_PREFER=name=plugin,...``) says which plugin wins.
    """

    def __init__(self, kind: str, hook: str, item_type: type, error: type[NascoreError], plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.hook = hook
        self.item_type = item_type
        self.error = error
        self.prefer: dict[str, str] = {}
        self._loaded: _Loaded[T] | None = None
        on_change(self.invalidate)

    def invalidate(self) -> None:
        self._loaded = None

    def set_preference(self, prefer: Mapping[str, str]) -> None:
        """Say which plugin wins for clashing names: ``{"block_name": "plugin_name"}``."""
        self.prefer = dict(prefer)
        self.invalidate()

    # loading -------------------------------------------------------------------------------------------------------

    def _load(self) -> _Loaded[T]:
        with lock:
            if self._loaded is not None:
                return self._loaded
            pm = plugin_manager()
            prefer = dict(pair.split("=", 1) for pair in env_list("NASCORE_PREFER") if "=" in pair)
            prefer.update(self.prefer)
            loaded: _Loaded[T] = _Loaded()
            offered: dict[str, list[tuple[str, T]]] = {}
            for impl in getattr(pm.hook, self.hook).get_hookimpls():
                for item in self._call(impl, loaded.failures):
                    offered.setdefault(item.name, []).append((impl.plugin_name, item))
            for name, offers in offered.items():
                winner = _pick(name, offers, prefer)
                if winner is None:
                    loaded.conflicts[name] = [plugin for plugin, _ in offers]
                    continue
                loaded.owners[name], loaded.items[name] = winner
            for name, item in loaded.items.items():
                for alias in getattr(item, "aliases", ()):
                    if alias not in loaded.items:
                        loaded.aliases.setdefault(alias, name)
            self._loaded = loaded
            return loaded

    def _call(self, impl: pluggy.HookImpl, failures: list[PluginFailure]) -> list[T]:
        try:
            result = impl.function()
            if result is None:
                return []
            if not isinstance(result, Iterable) or isinstance(result, (str, bytes, Mapping)):
                failures.append(PluginFailure(
                    impl.plugin_name, f"{self.hook}() returned {type(result).__name__}, expected a list of "
                    f"{self.item_type.__name__}"))
                return []
            result = list(result)  # inside the try: a generator may fail half-way
        except Exception as exc:  # noqa: BLE001 - a raising plugin is reported, the others go on
            failures.append(PluginFailure(impl.plugin_name, raised(f"{self.hook}()", exc)))
            return []
        good = []
        for item in result:
            if not isinstance(item, self.item_type):
                failures.append(PluginFailure(
                    impl.plugin_name, f"{self.hook}() returned {item!r:.80}, expected a {self.item_type.__name__}"))
            else:
                good.append(item)
        return good

    # lookup --------------------------------------------------------------------------------------------------------

    def get(self, name: str) -> T:
        loaded = self._load()
        item = loaded.items.get(name)
        if item is not None:
            return item
        if name in loaded.aliases:
            return loaded.items[loaded.aliases[name]]
        if name in loaded.conflicts:
            plugins = loaded.conflicts[name]
            raise DuplicateBlockError(
                f"{self.kind} {name!r} is registered by several plugins: {', '.join(plugins)}; choose one with "
                f"NASCORE_PREFER={name}={plugins[0]} (or Registry.set_preference)")
        known = list(loaded.items) + list(loaded.aliases)
        raise self.error(f"unknown {self.kind} {name!r}{suggest(name, known)}; "
                         f"`nascore {self.plural}` lists the {len(loaded.items)} known")

    def __contains__(self, name: str) -> bool:
        loaded = self._load()
        return name in loaded.items or name in loaded.aliases

    def names(self) -> list[str]:
        return sorted(self._load().items)

    def items(self) -> list[tuple[str, T]]:
        loaded = self._load()
        return [(name, loaded.items[name]) for name in sorted(loaded.items)]

    def owner(self, name: str) -> str:
        loaded = self._load()
        return loaded.owners[loaded.aliases.get(name, name)]

    def problems(self) -> list[str]:
        """Human-readable problems: failed plugins, failing hooks, unresolved name clashes."""
        loaded = self._load()
        lines = [str(f) for f in plugin_failures()] + [str(f) for f in loaded.failures]
        lines += [f"{self.kind} {name!r} registered by several plugins: {', '.join(p)}"
                  for name, p in loaded.conflicts.items()]
        return lines


def _pick(name: str, offers: list[tuple[str, T]], prefer: Mapping[str, str]) -> tuple[str, T] | None:
    if len(offers) == 1:
        return offers[0]
    chosen = prefer.get(name)
    for plugin, item in offers:
        if plugin == chosen:
            return plugin, item
    return None



"""Find and load plugins, and gather what their hooks provide into name registries.

Built-in and third-party plugins take the same path (pytest's lesson): an entry point in the ``nascore`` group is
imported and registered under its entry-point name. ``NASCORE_PLUGINS`` names extra modules to load (a user's own
module, no packaging needed); ``NASCORE_DISABLE_PLUGINS`` blocks plugins by name.

A plugin that fails to import or register is recorded as a :class:`PluginFailure` and skipped; the rest load.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import pluggy

from nascore import hookspec
from nascore.errors import DuplicateBlockError, NascoreError, PluginError, suggest

ENTRY_POINT_GROUP = "nascore"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.error}"


_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_failures: list[PluginFailure] = []


def _env_list(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created and loaded on first use."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager("nascore")
            pm.add_hookspecs(hookspec)
            for name in _env_list("NASCORE_DISABLE_PLUGINS"):
                pm.set_blocked(name)
            _load_entry_points(pm)
            for module_name in _env_list("NASCORE_PLUGINS"):
                _import_and_register(pm, module_name, module_name)
            _manager = pm
        return _manager


def plugin_failures() -> list[PluginFailure]:
    """Plugins that failed to import or register, in the order they were tried."""
    plugin_manager()
    return list(_failures)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a module or object with ``nascore_*`` hook functions; returns its plugin name.

    This is the path for a user's own module that is not a packaged entry point. Registries rebuild on next use.
    """
    pm = plugin_manager()
    try:
        plugin_name = pm.register(plugin, name=name)
    except ValueError as exc:
        raise PluginError(f"cannot register: {exc}", where=f"plugin {name or plugin!r}") from None
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"invalid hook implementation: {exc}", where=f"plugin {name or plugin!r}") from None
    if plugin_name is None:
        raise PluginError("is blocked (NASCORE_DISABLE_PLUGINS)", where=f"plugin {name!r}")
    _invalidate_registries()
    return plugin_name


def unregister_plugin(name: str) -> None:
    """Remove a plugin by name (tests, or a user replacing a block set at run time)."""
    plugin_manager().unregister(name=name)
    _invalidate_registries()


def reset() -> None:
    """Forget the manager and every registry; the next use loads plugins afresh (after a pip install, in tests)."""
    global _manager
    with _lock:
        _manager = None
        _failures.clear()
        importlib.invalidate_caches()
        _invalidate_registries()


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import error of a plugin is reported, not raised
            _failures.append(PluginFailure(ep.name, f"failed to import {ep.value!r}: {type(exc).__name__}: {exc}"))
            continue
        _register(pm, plugin, ep.name)


def _import_and_register(pm: pluggy.PluginManager, module_name: str, plugin_name: str) -> None:
    if pm.is_blocked(plugin_name) or pm.has_plugin(plugin_name):
        return
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001
        _failures.append(PluginFailure(plugin_name, f"failed to import {module_name!r}: {type(exc).__name__}: {exc}"))
        return
    _register(pm, module, plugin_name)


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        _failures.append(PluginFailure(name, f"failed to register: {exc}"))


# -- registries -----------------------------------------------------------------------------------------------------

T = TypeVar("T")
_registries: list["Registry[Any]"] = []


def _invalidate_registries() -> None:
    for registry in _registries:
        registry.invalidate()


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
        _registries.append(self)

    def invalidate(self) -> None:
        self._loaded = None

    def set_preference(self, prefer: Mapping[str, str]) -> None:
        """Say which plugin wins for clashing names: ``{"block_name": "plugin_name"}``."""
        self.prefer = dict(prefer)
        self.invalidate()

    # loading -------------------------------------------------------------------------------------------------------

    def _load(self) -> _Loaded[T]:
        with _lock:
            if self._loaded is not None:
                return self._loaded
            pm = plugin_manager()
            prefer = dict(pair.split("=", 1) for pair in _env_list("NASCORE_PREFER") if "=" in pair)
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
            failures.append(PluginFailure(impl.plugin_name, f"{self.hook}() raised {type(exc).__name__}: {exc}"))
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



"""Find, load and register plugins: the built-ins, the ``nascore`` entry points, and a user's own modules.

Built-in and third-party plugins take the same path (pytest's lesson): the built-ins are listed in code
(:data:`BUILTIN_PLUGINS`, so a new module in ``plugins/`` needs no reinstall), third-party packages declare an entry
point in the ``nascore`` group; each is imported and registered under its name by the same function.
``NASCORE_PLUGINS`` names extra modules to load (a user's own module, no packaging needed);
``NASCORE_DISABLE_PLUGINS`` blocks plugins by name, built-ins included.

A plugin that fails to import or register is recorded as a :class:`PluginFailure` and skipped; the rest load.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from nascore.ext import hookspec
from nascore.errors import PluginError

ENTRY_POINT_GROUP = "nascore"

# The built-in plugins: plugin name -> module (the repository's plugins/ folder, installed as nascore_plugins).
BUILTIN_PLUGINS: dict[str, str] = {
    "nascore.basic": "nascore_plugins.basic",
    "nascore.residual": "nascore_plugins.residual",
    "nascore.mobile": "nascore_plugins.mobile",
    "nascore.inception": "nascore_plugins.inception",
    "nascore.necks": "nascore_plugins.necks",
    "nascore.context": "nascore_plugins.context",
    "nascore.cells": "nascore_plugins.cells",
    "nascore.datasets": "nascore_plugins.datasets",
    "nascore.strategies": "nascore_plugins.strategies",
    "nascore.evaluators": "nascore_plugins.evaluators",
    "nascore.oneshot": "nascore_plugins.oneshot",
    "nascore.zerocost": "nascore_plugins.zerocost",
    "nascore.exporters": "nascore_plugins.exporters",
}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.error}"


lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_failures: list[PluginFailure] = []
_listeners: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever plugins are registered, unregistered or reset (registries drop their cache)."""
    _listeners.append(listener)


def _invalidate_registries() -> None:
    for listener in _listeners:
        listener()


def env_list(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created and loaded on first use."""
    global _manager
    with lock:
        if _manager is None:
            pm = pluggy.PluginManager("nascore")
            pm.add_hookspecs(hookspec)
            for name in env_list("NASCORE_DISABLE_PLUGINS"):
                pm.set_blocked(name)
            for plugin_name, module_name in BUILTIN_PLUGINS.items():
                _import_and_register(pm, module_name, plugin_name)
            _load_entry_points(pm)
            for module_name in env_list("NASCORE_PLUGINS"):
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
    with lock:
        _manager = None
        _failures.clear()
        importlib.invalidate_caches()
        _invalidate_registries()


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        _import_and_register(pm, ep.value, ep.name)


def _import_and_register(pm: pluggy.PluginManager, target: str, plugin_name: str) -> None:
    """Import ``module`` or ``module:attribute`` (an entry point's value) and register it as ``plugin_name``."""
    if pm.is_blocked(plugin_name) or pm.has_plugin(plugin_name):
        return
    module_name, _, attribute = target.partition(":")
    try:
        plugin = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            plugin = getattr(plugin, part)
    except Exception as exc:  # noqa: BLE001 - any import error of a plugin is reported, not raised
        _failures.append(PluginFailure(plugin_name, f"failed to import {target!r}: {type(exc).__name__}: {exc}"))
        return
    _register(pm, plugin, plugin_name)


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        _failures.append(PluginFailure(name, f"failed to register: {exc}"))

"""The lying blocks of ``faulty_plugins.LyingBlocks`` as a plugin module, for ``NASCORE_PLUGINS`` (Ray workers load
plugins by module name)."""

from __future__ import annotations

from nascore import hookimpl
from tests.faults.faulty_plugins import LYING_BLOCKS


@hookimpl
def nascore_blocks():
    return list(LYING_BLOCKS)

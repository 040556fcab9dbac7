"""The block registry: every ``BlockSpec`` from every plugin, looked up by name or alias."""

from __future__ import annotations

from nascore.errors import BlockNotFoundError
from nascore.ext.registry import Registry
from nascore.blocks.spec import BlockSpec

BLOCKS: Registry[BlockSpec] = Registry("block", "nascore_blocks", BlockSpec, BlockNotFoundError)


def get_block(name: str) -> BlockSpec:
    """The block called ``name`` (or one of its aliases); BlockNotFoundError suggests close names."""
    return BLOCKS.get(name)

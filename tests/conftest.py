"""Shared fixtures: the repository root, and plugin state reset around tests that register plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "graphs"
SPACES = ROOT / "search_spaces"


@pytest.fixture
def fresh_plugins():
    """Forget loaded plugins before and after: for tests that add, break or block plugins."""
    from nascore.ext import manager as plugins

    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture(scope="session")
def local_ray():
    """One real local Ray for the whole session (2 CPUs, no dashboard), shut down at the end."""
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    yield ray
    ray.shutdown()

"""nascore: neural-architecture search and composition for PyTorch, built from block plugins."""

from nascore.errors import NascoreError
from nascore.graph.core import Graph, Ref
from nascore.ext.hookspec import hookimpl
from nascore.blocks.spec import LIST, MANY, ONE, SEVERAL, Arity, BlockSpec, Inference, Param

__version__ = "0.1.0"


def __getattr__(name: str):
    """The Python API mirrors the CLI; heavy parts (Ray, Optuna, exporters) load on first use."""
    if name == "search":
        from nascore.nas.driver import search

        return search
    if name == "export":
        from nascore.exporting.package import export

        return export
    if name == "load_model":
        from nascore.exporting.verify import load_model

        return load_model
    if name == "train":
        from nascore.training.retrain import train_graph

        return train_graph
    if name == "train_supernet":
        from nascore.oneshot.training import train_supernet

        return train_supernet
    if name == "SearchSpace":
        from nascore.nas.space import SearchSpace

        return SearchSpace
    raise AttributeError(f"module 'nascore' has no attribute {name!r}")

__all__ = [
    "Graph", "Ref", "LIST", "MANY", "ONE", "SEVERAL", "Arity", "BlockSpec", "Inference", "NascoreError", "Param",
    "hookimpl", "__version__", "search", "export", "load_model", "train", "train_supernet",
    "SearchSpace",
]

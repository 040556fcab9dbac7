"""nascore: neural-architecture search and composition for PyTorch, built from block plugins."""

from nascore.errors import NascoreError
from nascore.graph import Graph, Ref
from nascore.hookspec import hookimpl
from nascore.schema import LIST, MANY, ONE, SEVERAL, Arity, BlockSpec, Inference, Param

__version__ = "0.1.0"

__all__ = [
    "Graph", "Ref", "LIST", "MANY", "ONE", "SEVERAL", "Arity", "BlockSpec", "Inference", "NascoreError", "Param", "hookimpl",
    "__version__",
]

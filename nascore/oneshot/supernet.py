"""A weight-sharing supernet over any search space, with no block written for it.

Every node of every point of the space runs the block's own module, built once per configuration on the meta
device (no memory), with its tensors taken from a shared bank by ``torch.func.functional_call``. The bank holds one
tensor per (node, block, structural choices, tensor name) at the largest size any point needs; a point uses its
leading channels and, for kernels, the centre (Once-for-All's weight sharing, without its transformation matrices).
So an expansion, width, kernel or depth choice shares weights; a block choice holds one set per option; a
structural choice (activation, norm) one set per value; a cell genotype one tensor per (edge, operation), named by
its kind's ``GenotypeSpec.shared_slot``. The chosen path is an explicit argument (STYLE.md 11):
``supernet(x, graph)``. The supernet is an ordinary nn.Module and knows nothing of Ray or of training.

Extraction gives, for any point, exactly ``graph.build()`` with the inherited tensors copied in: no supernet code is
needed to run, export or retrain it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.func import functional_call

from nascore.errors import NascoreError, SupernetError
from nascore.blocks.layers import DropPath
from nascore.graph.compile import drop_path_schedule, output_value
from nascore.graph.core import INPUT, Graph
from nascore.oneshot.paths import covering_paths, is_elastic

KERNEL_SHARING = ("slice", "separate")


@dataclass(frozen=True)
class BankKey:
    """Which weights a node of a point uses: its position, its block, and the values of its structural
    parameters (kernel too, with ``kernel_sharing="separate"``)."""

    node: str
    block: str
    structural: tuple[tuple[str, Any], ...]

    def __str__(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.structural)
        return f"{self.node} ({self.block}{', ' + extra if extra else ''})"


def _elastic_value(value: Any) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return len(values) > 0 and is_elastic(values)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def slice_to(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The part of a bank tensor a smaller configuration uses: leading entries; the centre of spatial (kernel) dims."""
    if tuple(tensor.shape) == shape:
        return tensor
    index = []
    for dim, (full, want) in enumerate(zip(tensor.shape, shape)):
        start = (full - want) // 2 if tensor.dim() >= 3 and dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


class Supernet(nn.Module):
    """The shared weights of every point of ``space``; ``forward(x, graph)`` runs the point ``graph``."""

    def __init__(self, space: Any, kernel_sharing: str = "slice", cover_limit: int = 256,
                 initialise: bool = True, seed: int = 0):
        """``seed`` draws the bank's initial values (the same on every rank; the global RNG is left as it was);
        ``initialise=False`` leaves the bank at zero, for weights loaded next (a trained supernet)."""
        super().__init__()
        if kernel_sharing not in KERNEL_SHARING:
            raise SupernetError(f"got {kernel_sharing!r}, expected one of {list(KERNEL_SHARING)}",
                                where="kernel_sharing")
        self.space = space
        self.kernel_sharing = kernel_sharing
        self._genotype_params = _refuse_unshareable(space)   # (block, parameter) -> kind, of shared genotypes
        self.cover_limit = cover_limit
        self.drop_path_rate = 0.0   # the largest drop-path rate in training (timm's linear rule along the path)
        self._slots: dict[tuple[Any, ...], str] = {}   # (key, tensor name[, op]) -> attribute holding the bank tensor
        self._modules_cache: dict[tuple[Any, ...], nn.Module] = {}
        points = covering_paths(space, cover_limit)
        self.reference = points[0][0]   # the largest point (every elastic decision at its maximum)
        self._init_bank(points, materialise=initialise, seed=seed)

    # the bank ------------------------------------------------------------------------------------------------------

    def bank_key(self, graph: Graph, name: str, info: Any) -> BankKey:
        structural = tuple(sorted(
            (k, _frozen(v)) for k, v in info.params.items()
            if (not _elastic_value(v) or (k == "kernel" and self.kernel_sharing == "separate"))
            and (info.block, k) not in self._genotype_params))
        return BankKey(name, info.block, structural)

    def _slot(self, key: BankKey, info: Any, tname: str, module: nn.Module) -> tuple[Any, ...]:
        """Where tensor ``tname`` of a node lives in the bank. In a cell whose genotype is chosen, the tensor belongs
        to an edge (the genotype kind's ``shared_slot`` names it) and to that edge's operation: the classes along
        its path (and, with separate kernels, the kernel size) tell one operation's tensors from another's."""
        shared = [(k, self._genotype_params[(info.block, k)]) for k in info.params
                  if (info.block, k) in self._genotype_params]
        if not shared:
            return (key, tname)
        param, spec = shared[0]
        path, sig = "", []
        for part in tname.split(".")[:-1]:
            path = f"{path}.{part}" if path else part
            sub = module.get_submodule(path)
            kernel = getattr(sub, "kernel_size", None)
            sig.append(type(sub).__name__ + (f"{kernel}" if kernel and self.kernel_sharing == "separate" else ""))
        return (key, spec.shared_slot(tname, info.params[param]), "/".join(sig))

    def _init_bank(self, points: Iterable[tuple[Graph, dict[str, Any]]], materialise: bool = True,
                   seed: int = 0) -> None:
        """Walk every node of every covering point on the meta device (no memory, no initialisation) to find each
        bank tensor's largest shape; then, with ``materialise``, build for real only the node configurations that
        hold some tensor's largest instance and copy their initialised values into the bank at its place (else the
        bank stays zero: weights are about to be loaded)."""
        largest: dict[tuple[Any, ...], tuple[int, Any, str]] = {}  # slot -> (numel, node info, tensor name)
        shapes: dict[tuple[Any, ...], list[int]] = {}
        is_param: dict[tuple[Any, ...], bool] = {}
        for graph, _ in points:
            analysis = graph.analyse()
            for name in analysis.order:
                info = analysis.nodes[name]
                key = self.bank_key(graph, name, info)
                node_module = self._meta_module(info)
                for tname, tensor, param in _tensors(node_module):
                    slot = self._slot(key, info, tname, node_module)
                    old = shapes.get(slot)
                    if old is not None and len(old) != tensor.dim():
                        raise SupernetError(f"tensor {tname!r} has {tensor.dim()} dimensions in one point and "
                                            f"{len(old)} in another; its weights cannot be shared", where=str(key))
                    shapes[slot] = [max(a, b) for a, b in zip(old, tensor.shape)] if old else list(tensor.shape)
                    if slot not in largest or tensor.numel() > largest[slot][0]:
                        largest[slot] = (tensor.numel(), info, tname)
                    is_param[slot] = param
        built: dict[tuple[Any, ...], nn.Module] = {}
        with torch.random.fork_rng(devices=[]):   # the bank's draw, not the caller's RNG
            torch.manual_seed(seed)
            for i, (slot, shape) in enumerate(shapes.items()):
                _, info, tname = largest[slot]
                dtype = dict((n, t) for n, t, _ in _tensors(self._meta_module(info)))[tname].dtype
                full = torch.zeros(shape, dtype=dtype)
                if materialise:
                    config = self._config(info)
                    if config not in built:      # a real build of one node, in a fixed order: the same on every rank
                        built[config] = info.spec.module(info.spec.in_channels(info.in_shapes), **info.params)
                    source = dict((n, t) for n, t, _ in _tensors(built[config]))[tname]
                    slice_to(full, tuple(source.shape)).copy_(source.detach())
                attr = f"w{i}"
                if is_param[slot]:
                    self.register_parameter(attr, nn.Parameter(full))
                else:
                    self.register_buffer(attr, full)
                self._slots[slot] = attr

    def layout(self) -> list[dict[str, Any]]:
        """Every bank tensor: where it belongs and its shape (stored beside checkpoints, checked on load)."""
        return [{"node": str(slot[0]), "tensor": slot[1] + (f" ({slot[2]})" if len(slot) > 2 else ""), "attr": attr,
                 "shape": list(getattr(self, attr).shape)} for slot, attr in self._slots.items()]

    # running a point -----------------------------------------------------------------------------------------------

    @staticmethod
    def _config(info: Any) -> tuple[Any, ...]:
        in_channels = info.spec.in_channels(info.in_shapes)
        return (info.block, tuple(sorted((k, _frozen(v)) for k, v in info.params.items())), _frozen(in_channels))

    def _meta_module(self, info: Any) -> nn.Module:
        """The node's module built on the meta device (no memory), once per configuration."""
        config = self._config(info)
        module = self._modules_cache.get(config)
        if module is None:
            with torch.device("meta"):
                module = info.spec.module(info.spec.in_channels(info.in_shapes), **info.params)
            self._modules_cache[config] = module
        return module

    def _node(self, graph: Graph, name: str, info: Any) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        module = self._meta_module(info)
        key = self.bank_key(graph, name, info)
        tensors = {}
        for tname, meta, _ in _tensors(module):
            attr = self._slots.get(self._slot(key, info, tname, module))
            bank = getattr(self, attr) if attr is not None else None
            if bank is None or bank.dim() != meta.dim() or any(w > f for w, f in zip(meta.shape, bank.shape)):
                have = "no such tensor" if bank is None else f"shape {list(bank.shape)}"
                raise SupernetError(f"this point needs {tname} of shape {list(meta.shape)} but the supernet has "
                                    f"{have}: the point is not in the space the supernet was built from",
                                    where=f"node {str(key)!r}")
            tensors[tname] = slice_to(bank, tuple(meta.shape))
        return module, tensors

    def forward(self, x: torch.Tensor, graph: Graph) -> Any:
        analysis = graph.analyse()
        rates = drop_path_schedule(analysis, self.drop_path_rate) if self.drop_path_rate > 0 else {}
        values: dict[str, Any] = {INPUT: x}
        for name in analysis.order:
            info = analysis.nodes[name]
            module, tensors = self._node(graph, name, info)
            module.train(self.training)
            if name in rates:   # the cached module is shared by every path: its rate is set per call
                for m in module.modules():
                    if isinstance(m, DropPath):
                        m.drop_prob = rates[name]
            args = [output_value(values, ref) for ref in info.inputs]
            out = functional_call(module, tensors, ((args[0],) if info.spec.arity.single else (args,)))
            values[name] = out if len(info.outputs) == 1 else dict(zip(info.outputs, out))
        results = [output_value(values, ref) for ref in graph.outputs]
        return results[0] if len(results) == 1 else tuple(results)

    # extraction ----------------------------------------------------------------------------------------------------

    def extract(self, graph: Graph) -> dict[str, torch.Tensor]:
        """The inherited state dict of ``graph.build()``: every tensor copied out of the bank."""
        analysis = graph.analyse()
        state: dict[str, torch.Tensor] = {}
        for name in analysis.order:
            module, tensors = self._node(graph, name, analysis.nodes[name])
            persistent = module.state_dict(keep_vars=True).keys()
            state.update({f"{name}.{t}": v.detach().clone() for t, v in tensors.items() if t in persistent})
        return state

    def subnet(self, graph: Graph, device: str | torch.device | None = None) -> nn.Module:
        """``graph.build()`` with the inherited weights: an ordinary module, nothing of the supernet inside."""
        model = graph.build()
        model.load_state_dict(self.extract(graph))
        return model.to(device) if device is not None else model


def _tensors(module: nn.Module):
    """(name, tensor, is_parameter) of every parameter and buffer, non-persistent buffers included."""
    for name, p in module.named_parameters():
        yield name, p, True
    for name, b in module.named_buffers():
        yield name, b, False


def _refuse_unshareable(space: Any) -> dict[tuple[str, str], Any]:
    """Choices whose options cannot be served by shared weights, named before anything is built; returns the
    genotype kind of every (block, parameter) whose genotype is chosen and shareable (its kind names tensors by
    edge)."""
    from nascore.nas.space import Genotype

    shareable: dict[tuple[str, str], Any] = {}
    for template in space.nodes:
        blocks = {template.block: template.params} if template.block else \
            {b: {**template.params, **own} for b, own in template.options.items()}
        for block, params in blocks.items():
            for param, expr in params.items():
                if isinstance(expr, Genotype) and expr.spec.shared_slot is not None:
                    shareable[(block, param)] = expr.spec
    for name, expr in space.choices():
        if isinstance(expr, Genotype) and expr.spec.shared_slot is None:
            raise SupernetError(f"a {expr.kind} cell genotype choice ({expr.describe()}) is not supported by the "
                                "one-shot supernet: its kind does not name its cell's tensors by edge "
                                "(GenotypeSpec.shared_slot), so every genotype would need weights of its own; fix "
                                "the genotype or search this space with the training evaluator",
                                where=f"choice {name!r}")
    return shareable


__all__ = ["Supernet", "BankKey", "slice_to", "KERNEL_SHARING"]

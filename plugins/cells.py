"""Searched cells: the NAS-Bench-201 cell and its reduction block, and the DARTS / NASNet-style cell.

A cell's wiring is one string parameter (``genotype``) so a search space can sample it like any other choice. Each
cell also provides its genotype kind (``nascore_genotypes``): the ops it accepts, the decisions a search space
samples, and its parser, formatter and canonical form, all from the tables and functions here.
Modules mirror the reference implementations layer for layer and keep their state-dict keys (NAS-Bench-201's
``layers.k.op.1.weight``, DARTS' ``_ops.k.op.1.weight``), so published weights load.
"""

from __future__ import annotations

import functools
import itertools
from typing import List

import torch
import torch.nn as nn
from nascore_plugins import common

from nascore import SEVERAL, BlockSpec, Param, hookimpl
from nascore.blocks.tally import Tally, fmt_shape, same_shapes
from nascore.errors import ParamError, ShapeError, suggest
from nascore.blocks.layers import NORM_EPS, NORM_MOMENTUM, DropPath, Norm, make_norm
from nascore.blocks.spec import REQUIRED
from nascore.nas.genotypes import Decision, GenotypeSpec

# -- shared operations ----------------------------------------------------------------------------------------------


class ReLUConvBN(nn.Module):
    """ReLU, bias-free convolution, batch norm: the pre-activation unit of NAS-Bench-201 and DARTS."""

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, norm: Norm = Norm()):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False),
                                nn.Conv2d(in_channels, out, kernel, stride, padding, dilation, bias=False),
                                make_norm(norm, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    @staticmethod
    def tally(t: Tally, shape, out: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1):
        return t.norm(t.conv(shape, out, kernel, stride, padding, dilation), "batch")


class Zero(nn.Module):
    """The ``none`` operation: zeros of the (strided) input's shape, as DARTS' and NAS-Bench-201's ``Zero``."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


def _zero_tally(shape, stride: int):
    c, h, w = shape
    return c, -(-h // stride), -(-w // stride)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two 1x1 stride-2 convs, one shifted by a pixel, concatenated."""

    def __init__(self, in_channels: int, out: int, norm: Norm = Norm()):
        super().__init__()
        _check_even_channels(out)
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(in_channels, out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(in_channels, out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = make_norm(norm, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], 1))

    @staticmethod
    def tally(t: Tally, shape, out: int):
        _check_even_channels(out)
        c, h, w = shape
        if h % 2 or w % 2:
            raise ShapeError(f"a factorized reduction (DARTS' stride-2 skip / preprocess) needs an even height and "
                             f"width, got {fmt_shape(shape)}")
        a = t.conv(shape, out // 2, 1, 2, 0)
        t.conv((c, h - 1, w - 1), out // 2, 1, 2, 0)
        return t.norm((out, a[1], a[2]), "batch")


def _check_even_channels(out: int) -> None:
    if out % 2:
        raise ShapeError(f"a factorized reduction splits its output channels in two halves and needs an even count, "
                         f"got {out}")


# -- NAS-Bench-201 --------------------------------------------------------------------------------------------------

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node, from node), in the genotype's order


def _genotype_error(message: str) -> ParamError:
    return ParamError(message, where="parameter 'genotype'")


@functools.lru_cache(maxsize=4096)
def parse_nb201(genotype: str) -> tuple[str, ...]:
    """``'|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|'`` -> the six ops in ``NB201_EDGES`` order.

    Node j (1..3) lists one ``op~i`` per earlier node i, between bars; nodes are joined by ``+``. Edges of a node may
    come in any order. Raises ParamError naming the node and what is wrong.
    """
    nodes = genotype.strip().split("+")
    if len(nodes) != 3:
        raise _genotype_error(f"expected 3 nodes joined by '+' (NAS-Bench-201 form "
                              f"'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'), got {len(nodes)} in {genotype!r:.80}")
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        node = node.strip()
        if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
            raise _genotype_error(f"node {j} must be written between bars like '|op~0|', got {node!r:.60}")
        edges = [e.strip() for e in node[1:-1].split("|")]
        if len(edges) != j:
            raise _genotype_error(f"node {j} needs {j} edge{'s' if j > 1 else ''} (one from each of nodes "
                                  f"0..{j - 1}), got {len(edges)} in {node!r:.60}")
        by_source: dict[int, str] = {}
        for edge in edges:
            op, sep, src = edge.partition("~")
            if not sep or not src.strip().isdigit():
                raise _genotype_error(f"node {j}: edge {edge!r:.40} is not of the form 'op~input'")
            op, i = op.strip(), int(src)
            if op not in NB201_OPS:
                raise _genotype_error(f"node {j}: unknown operation {op!r:.40}{suggest(op, NB201_OPS)}; expected one "
                                      f"of {list(NB201_OPS)}")
            if i >= j:
                raise _genotype_error(f"node {j}: input ~{i} is not an earlier node (expected 0..{j - 1})")
            if i in by_source:
                raise _genotype_error(f"node {j}: input ~{i} appears twice")
            by_source[i] = op
        ops += [by_source[i] for i in range(j)]
    return tuple(ops)


def format_nb201(ops: tuple[str, ...]) -> str:
    """The six ops in ``NB201_EDGES`` order -> the standard NAS-Bench-201 string."""
    edges = [f"{op}~{i}" for (_, i), op in zip(NB201_EDGES, ops)]
    return f"|{edges[0]}|+|{edges[1]}|{edges[2]}|+|{edges[3]}|{edges[4]}|{edges[5]}|"


class NB201Cell(nn.Module):
    """NAS-Bench-201 cell (``InferCell``): node j = sum over i < j of op_(i,j)(node i); the output is node 3.

    Operations: ``none`` (zeros), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-Conv-BN),
    ``avg_pool_3x3`` (stride 1, padding not counted). Channels and size are kept.
    """

    def __init__(self, in_channels: int, genotype: str, norm_eps: float = NORM_EPS,
                 norm_momentum: float = NORM_MOMENTUM):
        super().__init__()
        ops = parse_nb201(genotype)
        norm = Norm("batch", norm_eps, norm_momentum)
        self.layers = nn.ModuleList(_nb201_op(op, in_channels, norm) for op in ops)
        self.sources: List[int] = [i for _, i in NB201_EDGES]
        self.first: List[bool] = [i == 0 for _, i in NB201_EDGES]
        self.last: List[bool] = [i == j - 1 for j, i in NB201_EDGES]
        self.genotype = format_nb201(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: List[torch.Tensor] = [x]
        acc = x
        for k, op in enumerate(self.layers):
            y = op(nodes[self.sources[k]])
            acc = y if self.first[k] else acc + y
            if self.last[k]:
                nodes.append(acc)
        return nodes[-1]

    def extra_repr(self) -> str:
        return f"genotype={self.genotype!r}"


def _nb201_op(op: str, channels: int, norm: Norm) -> nn.Module:
    if op == "none":
        return Zero(1)
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    kernel = 3 if op == "nor_conv_3x3" else 1
    return ReLUConvBN(channels, channels, kernel, 1, kernel // 2, norm=norm)


def _nb201_infer(in_shapes, genotype, norm_eps, norm_momentum):
    shape = in_shapes[0]
    if len(shape) != 3:
        raise ShapeError(f"nb201_cell needs a (C, H, W) feature map, got {fmt_shape(shape)}")
    t = Tally()
    c = shape[0]
    for op in parse_nb201(genotype):
        if op.startswith("nor_conv"):
            kernel = int(op[-1])
            ReLUConvBN.tally(t, shape, c, kernel, 1, kernel // 2)
        elif op == "avg_pool_3x3":
            t.pool(shape, 3, 1, 1)
    return t.result(out=shape)


def nb201_unique_str(genotype: str) -> str:
    """NAS-Bench-201's own isomorphism key, ``Structure.to_unique_str(consider_zero=True)``, reproduced exactly.

    It gives the paper's 6466 unique cells of 15625. It is a string heuristic: a zero term stays in a sum
    (``x + 0`` differs from ``x``), a node whose every term is zero (``'#+#'``) is not recognised as zero, and
    sums nested through ``skip_connect`` sort differently from flat ones. :func:`nb201_canonical` fixes all three.
    """
    ops = parse_nb201(genotype)
    nodes = ["0"]
    k = 0
    for j in (1, 2, 3):
        terms = []
        for i in range(j):
            op, src = ops[k], nodes[i]
            k += 1
            if op == "none" or src == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(src)
            else:
                terms.append(f"({src})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[3]


def _nb201_function(ops: tuple[str, ...]):
    """What the cell computes, as a hashable expression: node 3 as a sorted tuple of terms (a sum).

    The input is the term ``('x',)``; an operation on node i is ``(op, node i)``. Following NAS-Bench-201's
    convention, ``none`` and any operation on an all-zero node contribute nothing (strictly, a conv of zeros is
    its batch norm's shift, which NAS-Bench-201 counts as zero too); ``skip_connect`` passes node i's terms into the
    sum (sums are flattened, so nesting does not matter). Linearity of average pooling is not used.
    """
    nodes: list[tuple] = [(("x",),)]
    k = 0
    for j in (1, 2, 3):
        terms: list = []
        for i in range(j):
            op, src = ops[k], nodes[i]
            k += 1
            if op == "none" or not src:
                continue
            if op == "skip_connect":
                terms += src
            else:
                terms.append((op, src))
        nodes.append(tuple(sorted(terms, key=repr)))
    return nodes[3]


@functools.lru_cache(maxsize=1)
def _nb201_representatives() -> dict:
    """Each function class of the 15625 cells -> its representative: the most ``none`` edges, then the first in
    ``NB201_OPS`` order (so every edge that cannot reach node 3 is ``none``)."""
    best: dict = {}
    for ops in itertools.product(NB201_OPS, repeat=len(NB201_EDGES)):
        key = _nb201_function(ops)
        rank = (-ops.count("none"), tuple(NB201_OPS.index(op) for op in ops))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, ops)
    return {key: ops for key, (_, ops) in best.items()}


def nb201_canonical_ops(genotype: str) -> tuple[str, ...]:
    return _nb201_representatives()[_nb201_function(parse_nb201(genotype))]


def nb201_canonical_genotype(genotype: str) -> str:
    """The representative genotype of ``genotype``'s class (see :func:`nb201_canonical`)."""
    return format_nb201(nb201_canonical_ops(genotype))


def nb201_canonical(params: dict) -> dict:
    """Map equivalent NAS-Bench-201 cells to one representative genotype (``BlockSpec.canonical``).

    Two genotypes are equivalent when they compute the same expression (see :func:`_nb201_function`): edges that
    never reach node 3, or only carry zeros, become ``none``; ``skip_connect`` rewirings and the order of sums do
    not matter. Of the 15625 cells, 4930 classes remain (NAS-Bench-201's string key, :func:`nb201_unique_str`,
    counts 6466 because of the artefacts listed there).
    """
    if not isinstance(params.get("genotype"), str):
        raise ParamError(f"got {params.get('genotype')!r:.60}, expected a NAS-Bench-201 genotype string",
                         where="parameter 'genotype'")
    return {**params, "genotype": nb201_canonical_genotype(params["genotype"])}


NB201_CELL = BlockSpec(
    name="nb201_cell", aliases=("nas_bench_201_cell",), module=NB201Cell, infer=_nb201_infer,
    params=(Param("genotype", str, REQUIRED, "cell wiring in NAS-Bench-201 form, e.g. "
                  "'|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'"
                  "; ops: " + ", ".join(NB201_OPS)), *common.norm_settings()),
    canonical=nb201_canonical,
    doc="NAS-Bench-201 cell: a 4-node DAG, each edge one of none / skip / ReLU-Conv-BN 1x1, 3x3 / avg-pool 3x3; "
        "keeps channels and size.",
    paper="NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search (Dong & Yang 2020)",
)


class NB201Reduction(nn.Module):
    """NAS-Bench-201's reduction block (``ResNetBasicblock``): ReLU-Conv-BN 3x3 (stride) then 3x3, plus a shortcut
    of 2x2 average pooling and a bias-free 1x1 conv (stride 2), a ReLU-Conv-BN 1x1 (new width) or identity."""

    def __init__(self, in_channels: int, out: int, stride: int, drop_path: float, norm_eps: float = NORM_EPS,
                 norm_momentum: float = NORM_MOMENTUM):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        self.conv_a = ReLUConvBN(in_channels, out, 3, stride, 1, norm=norm)
        self.conv_b = ReLUConvBN(out, out, 3, 1, 1, norm=norm)
        if stride == 2:
            self.downsample: nn.Module = nn.Sequential(nn.AvgPool2d(2, 2, 0),
                                                       nn.Conv2d(in_channels, out, 1, bias=False))
        elif in_channels != out:
            self.downsample = ReLUConvBN(in_channels, out, 1, norm=norm)
        else:
            self.downsample = nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.drop_path(self.conv_b(self.conv_a(x)))


def _nb201_reduction_infer(in_shapes, out, stride, drop_path, norm_eps, norm_momentum):
    shape = in_shapes[0]
    if len(shape) != 3:
        raise ShapeError(f"nb201_reduction needs a (C, H, W) feature map, got {fmt_shape(shape)}")
    t = Tally()
    branch = ReLUConvBN.tally(t, ReLUConvBN.tally(t, shape, out, 3, stride, 1), out, 3, 1, 1)
    if stride == 2:
        residual = t.conv(t.pool(shape, 2, 2), out, 1)
        if residual != branch:
            raise ShapeError(f"nb201_reduction with stride 2 needs an even height and width (its shortcut pools "
                             f"2x2), got {fmt_shape(shape)}")
    elif shape[0] != out:
        ReLUConvBN.tally(t, shape, out, 1)
    return t.result(out=branch)


NB201_REDUCTION = BlockSpec(
    name="nb201_reduction", module=NB201Reduction, infer=_nb201_reduction_infer,
    params=(common.out(), Param("stride", int, 2, "stride (NAS-Bench-201 uses 2)", low=1, high=2),
            common.drop_path(), *common.norm_settings()),
    doc="NAS-Bench-201's reduction block between cell stages: a pre-activation ResNet basic block, stride 2, "
        "shortcut avg-pool 2x2 + 1x1 conv.",
    paper="NAS-Bench-201 (Dong & Yang 2020); Deep Residual Learning (He et al. 2016)",
)

# -- DARTS ----------------------------------------------------------------------------------------------------------

DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5", "conv_7x1_1x7")

DARTS_V2_NORMAL = ("sep_conv_3x3:0,sep_conv_3x3:1|sep_conv_3x3:0,sep_conv_3x3:1|sep_conv_3x3:1,skip_connect:0|"
                   "skip_connect:0,dil_conv_3x3:2")
DARTS_V2_REDUCE = ("max_pool_3x3:0,max_pool_3x3:1|skip_connect:2,max_pool_3x3:1|max_pool_3x3:0,skip_connect:2|"
                   "skip_connect:2,max_pool_3x3:1")


@functools.lru_cache(maxsize=4096)
def parse_darts(genotype: str) -> tuple[tuple[tuple[str, int], tuple[str, int]], ...]:
    """``'op:i,op:i|op:i,op:i|...'`` -> per intermediate node, its two (op, input) pairs.

    Nodes are separated by ``|``, the two pairs of a node by ``,``. Inputs 0 and 1 are the cell inputs s0 and s1,
    2.. are earlier intermediate nodes (node k, counted from 0, may read 0..k+1). DARTS uses 4 nodes.
    """
    nodes = []
    for k, node in enumerate(genotype.strip().split("|")):
        pairs = [p.strip() for p in node.split(",")]
        if len(pairs) != 2:
            raise _genotype_error(f"node {k} needs two 'op:input' pairs separated by ',', got {node.strip()!r:.60}")
        parsed = []
        for p in pairs:
            op, sep, src = p.partition(":")
            op = op.strip()
            if not sep or not src.strip().isdigit():
                raise _genotype_error(f"node {k}: {p!r:.40} is not of the form 'op:input'")
            if op not in DARTS_OPS:
                raise _genotype_error(f"node {k}: unknown operation {op!r:.40}{suggest(op, DARTS_OPS)}; expected one "
                                      f"of {list(DARTS_OPS)}")
            i = int(src)
            if i > k + 1:
                raise _genotype_error(f"node {k}: input {i} is not available (expected 0, 1 for the cell inputs or "
                                      f"2..{k + 1} for earlier nodes)" if k else
                                      f"node 0: input {i} is not available (expected 0 or 1, the cell inputs)")
            parsed.append((op, i))
        nodes.append(tuple(parsed))
    return tuple(nodes)


def format_darts(nodes) -> str:
    return "|".join(",".join(f"{op}:{i}" for op, i in node) for node in nodes)


def _darts_genotype(genotype: str | None, reduction: bool) -> str:
    if genotype is None:
        return DARTS_V2_REDUCE if reduction else DARTS_V2_NORMAL
    return genotype


class SepConv(nn.Module):
    """DARTS' separable conv: (ReLU, depthwise kxk, pointwise 1x1, BN) twice; only the first depthwise strides."""

    def __init__(self, channels: int, kernel: int, stride: int, norm: Norm = Norm()):
        super().__init__()
        c, p = channels, kernel // 2
        self.op = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(c, c, kernel, stride, p, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), make_norm(norm, c),
            nn.ReLU(inplace=False), nn.Conv2d(c, c, kernel, 1, p, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), make_norm(norm, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    @staticmethod
    def tally(t: Tally, shape, kernel: int, stride: int):
        c, p = shape[0], kernel // 2
        shape = t.norm(t.conv(t.conv(shape, c, kernel, stride, p, groups=c), c, 1), "batch")
        return t.norm(t.conv(t.conv(shape, c, kernel, 1, p, groups=c), c, 1), "batch")


class DilConv(nn.Module):
    """DARTS' dilated separable conv: ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN."""

    def __init__(self, channels: int, kernel: int, stride: int, norm: Norm = Norm()):
        super().__init__()
        c = channels
        self.op = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(c, c, kernel, stride, kernel - 1, 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), make_norm(norm, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    @staticmethod
    def tally(t: Tally, shape, kernel: int, stride: int):
        c = shape[0]
        return t.norm(t.conv(t.conv(shape, c, kernel, stride, kernel - 1, 2, groups=c), c, 1), "batch")


def _darts_op(op: str, c: int, stride: int, norm: Norm) -> nn.Module:
    if op == "none":
        return Zero(stride)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, norm)
    if op.startswith("sep_conv"):
        return SepConv(c, int(op[-1]), stride, norm)
    if op.startswith("dil_conv"):
        return DilConv(c, int(op[-1]), stride, norm)
    # conv_7x1_1x7
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
                         nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False), make_norm(norm, c))


def _darts_op_tally(t: Tally, op: str, shape, stride: int):
    c = shape[0]
    if op == "none":
        return _zero_tally(shape, stride)
    if op.endswith("pool_3x3"):
        return t.pool(shape, 3, stride, 1)
    if op == "skip_connect":
        return shape if stride == 1 else FactorizedReduce.tally(t, shape, c)
    if op.startswith("sep_conv"):
        return SepConv.tally(t, shape, int(op[-1]), stride)
    if op.startswith("dil_conv"):
        return DilConv.tally(t, shape, int(op[-1]), stride)
    shape = t.conv(t.conv(shape, c, (1, 7), (1, stride), (0, 3)), c, (7, 1), (stride, 1), (3, 0))
    return t.norm(shape, "batch")


class DartsCell(nn.Module):
    """DARTS' evaluation cell (``model.Cell``): preprocess s0 and s1 to C channels, then each intermediate node sums
    two operations on earlier states; the output concatenates every intermediate node (``nodes x C`` channels).

    In a reduction cell the operations reading s0 / s1 have stride 2. ``drop_path`` applies to every operation but
    the identity ``skip_connect``, as DARTS does (its rate lives in one :class:`DropPath` a trainer can schedule).
    """

    def __init__(self, in_channels: list[int], out: int, reduction: bool, reduction_prev: bool,
                 genotype: str | None, drop_path: float, norm_eps: float = NORM_EPS,
                 norm_momentum: float = NORM_MOMENTUM):
        super().__init__()
        nodes = parse_darts(_darts_genotype(genotype, reduction))
        norm = Norm("batch", norm_eps, norm_momentum)
        self.preprocess0 = FactorizedReduce(in_channels[0], out, norm) if reduction_prev else \
            ReLUConvBN(in_channels[0], out, 1, norm=norm)
        self.preprocess1 = ReLUConvBN(in_channels[1], out, 1, norm=norm)
        pairs = [p for node in nodes for p in node]
        self._ops = nn.ModuleList(_darts_op(op, out, 2 if reduction and i < 2 else 1, norm) for op, i in pairs)
        self._indices: List[int] = [i for _, i in pairs]
        self._droppable: List[bool] = [not isinstance(m, nn.Identity) for m in self._ops]
        self.drop_path = DropPath(drop_path)
        self.genotype = format_darts(nodes)

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        states: List[torch.Tensor] = [self.preprocess0(xs[0]), self.preprocess1(xs[1])]
        h = states[0]
        for k, op in enumerate(self._ops):
            y = op(states[self._indices[k]])
            if self._droppable[k]:
                y = self.drop_path(y)
            if k % 2 == 0:
                h = y
            else:
                states.append(h + y)
        return torch.cat(states[2:], 1)

    def extra_repr(self) -> str:
        return f"genotype={self.genotype!r}"


def _darts_infer(in_shapes, out, reduction, reduction_prev, genotype, drop_path, norm_eps, norm_momentum):
    nodes = parse_darts(_darts_genotype(genotype, reduction))
    for i, s in enumerate(in_shapes):
        if len(s) != 3:
            raise ShapeError(f"darts_cell needs (C, H, W) feature maps, got {fmt_shape(s)} (input {i})")
    t = Tally()
    s0 = FactorizedReduce.tally(t, in_shapes[0], out) if reduction_prev else \
        ReLUConvBN.tally(t, in_shapes[0], out, 1)
    s1 = ReLUConvBN.tally(t, in_shapes[1], out, 1)
    if s0 != s1:
        hint = ("s0 must have twice the size of s1 with reduction_prev" if reduction_prev else
                "set reduction_prev: true when s0 comes from before a reduction cell")
        raise ShapeError(f"darts_cell: s0 {fmt_shape(in_shapes[0])} and s1 {fmt_shape(in_shapes[1])} give "
                         f"{fmt_shape(s0)} and {fmt_shape(s1)} after preprocessing; {hint}")
    states = [s0, s1]
    for k, node in enumerate(nodes):
        outs = [_darts_op_tally(t, op, states[i], 2 if reduction and i < 2 else 1) for op, i in node]
        states.append(same_shapes(outs, f"darts_cell node {k}"))
    c, h, w = states[2]
    return t.result(out=(len(nodes) * c, h, w))


def darts_canonical_genotype(genotype: str) -> str:
    """Sort the two pairs of every node (their sum is the same either way)."""
    return format_darts(tuple(sorted(node, key=lambda p: (p[1], p[0]))) for node in parse_darts(genotype))


def darts_canonical(params: dict) -> dict:
    """Fill the default genotype and sort the two pairs of every node (:func:`darts_canonical_genotype`)."""
    genotype = _darts_genotype(params.get("genotype"), bool(params.get("reduction", False)))
    return {**params, "genotype": darts_canonical_genotype(genotype)}


DARTS_CELL = BlockSpec(
    name="darts_cell", aliases=("nasnet_cell",), module=DartsCell, infer=_darts_infer, arity=SEVERAL(2),
    params=(common.out("C: channels of each intermediate node (the cell outputs nodes x C)"),
            Param("reduction", bool, False, "reduction cell: operations on s0 / s1 have stride 2"),
            Param("reduction_prev", bool, False, "s0 has twice the size of s1 (the previous cell reduced): "
                  "preprocess it with a factorized reduction"),
            Param("genotype", str, None, "wiring 'op:input,op:input|...' per intermediate node; inputs 0, 1 are "
                  "s0, s1, 2.. earlier nodes (default: DARTS V2's normal or reduction cell); ops: "
                  + ", ".join(DARTS_OPS)),
            common.drop_path(), *common.norm_settings()),
    canonical=darts_canonical,
    doc="DARTS / NASNet-style cell on the two previous cells' outputs (s0, s1): intermediate nodes each sum two "
        "operations on earlier states; output is their concatenation.",
    paper="DARTS: Differentiable Architecture Search (Liu et al. 2019); NASNet (Zoph et al. 2018)",
)


# -- genotype kinds: what `{genotype: nb201}` and `{genotype: darts}` sample in a search space -----------------------


def _nb201_decisions(ops: tuple[str, ...]) -> list[Decision]:
    """One op per edge, in ``NB201_EDGES`` order: ``edge_0_1``, ``edge_0_2``, ``edge_1_2``, ... ``edge_2_3``."""
    return [Decision(f"edge_{i}_{j}", ops) for j, i in NB201_EDGES]


def _nb201_compose(values) -> str:
    return format_nb201(tuple(values))


# What a DARTS search samples from by default (DARTS' search space without 'none'), in this order: the order is
# part of every stored study. The cell accepts all of DARTS_OPS.
DARTS_SEARCH_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3",
                    "skip_connect")


def _darts_decisions(ops: tuple[str, ...], nodes: int) -> list[Decision]:
    """Per intermediate node k, two (input, op) pairs: ``node{k}/input{s}`` in 0..k+1, then ``node{k}/op{s}``."""
    return [d for k in range(nodes) for s in range(2)
            for d in (Decision(f"node{k}/input{s}", tuple(range(k + 2))), Decision(f"node{k}/op{s}", ops))]


def _darts_compose(values, nodes: int) -> str:
    pairs = [(values[i + 1], values[i]) for i in range(0, len(values), 2)]   # (op, input)
    return format_darts(pairs[k:k + 2] for k in range(0, len(pairs), 2))


def _nb201_slot(tensor: str, genotype: str) -> str:
    """NB201Cell's ``layers.k`` is edge k in every genotype: its tensor names already say the edge."""
    return tensor


def _darts_slot(tensor: str, genotype: str) -> str:
    """DartsCell's ``_ops.k`` is the k-th (op, input) pair: named by the edge it reads, ``node{n}_from{i}``, so a
    genotype that wires the same edge shares its weights whichever pair it sits in (``_again``: the node's second
    pair reads the same input as its first)."""
    parts = tensor.split(".")
    if parts[0] != "_ops":
        return tensor
    k = int(parts[1])
    node = parse_darts(genotype)[k // 2]
    (_, first), (_, second) = node
    edge = f"node{k // 2}_from{node[k % 2][1]}" + ("_again" if k % 2 and first == second else "")
    return ".".join(["_ops", edge, *parts[2:]])


def _darts_covering(ops: tuple[str, ...], nodes: int) -> list[list]:
    """Every (edge, op, again) of :func:`_darts_slot`: per op and input i, every node reads min(i, its last input)
    through both pairs."""
    rows = []
    for op in ops:
        for i in range(nodes + 1):
            rows.append([v for k in range(nodes) for v in (min(i, k + 1), op) * 2])
    return rows


NB201_GENOTYPE = GenotypeSpec(
    name="nb201", ops=NB201_OPS, decisions=_nb201_decisions, compose=_nb201_compose, parse=parse_nb201,
    format=format_nb201, canonical=nb201_canonical_genotype, shared_slot=_nb201_slot,
    doc="NAS-Bench-201 cell (nb201_cell): one op per edge of the 4-node DAG, six decisions.",
)

DARTS_GENOTYPE = GenotypeSpec(
    name="darts", ops=DARTS_OPS, default_ops=DARTS_SEARCH_OPS, decisions=_darts_decisions, compose=_darts_compose,
    parse=parse_darts, format=format_darts, canonical=darts_canonical_genotype, shared_slot=_darts_slot,
    covering=_darts_covering,
    options=(Param("nodes", int, 4, "intermediate nodes of the cell (DARTS uses 4)", low=1, high=8),),
    doc="DARTS / NASNet cell (darts_cell): per intermediate node two inputs and two ops.",
)


@hookimpl
def nascore_blocks():
    return [NB201_CELL, NB201_REDUCTION, DARTS_CELL]


@hookimpl
def nascore_genotypes():
    return [NB201_GENOTYPE, DARTS_GENOTYPE]

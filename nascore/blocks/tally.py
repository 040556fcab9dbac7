"""Weight-free shapes, parameter counts and MACs of the layers blocks are made of.

A block's ``infer`` walks the same layers as its ``__init__`` on a :class:`Tally`, which costs microseconds per
layer: search estimates thousands of architectures, and even a meta-device forward is slower than a small CPU one.
:mod:`nascore.blocks.testing` checks every formula against the built module.

MACs follow fvcore (the counter behind the reference figures): one fused multiply-add of a convolution or linear
layer is one MAC (bias free); eval-mode batch norm costs 2 per element (1 without affine); group / layer / instance
norm 5 (4); adaptive average pooling 1 per input element; nearest upsampling 1 and bilinear 4 per output element.
Activations, element-wise ops, max/avg pooling and means are free.
"""

from __future__ import annotations

from collections.abc import Sequence

from nascore.errors import ShapeError
from nascore.blocks.spec import Inference, Shape


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


def same_padding(kernel: int | Sequence[int], dilation: int | Sequence[int] = 1) -> tuple[int, int]:
    """Padding that keeps the spatial size at stride 1 (odd kernels)."""
    (kh, kw), (dh, dw) = pair(kernel), pair(dilation)
    return (kh - 1) // 2 * dh, (kw - 1) // 2 * dw


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _spatial(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:  # torch's rule: the last window must start inside the input
            out -= 1
        return out
    return span // stride + 1


class Tally:
    """Accumulates parameters and MACs while mapping shapes through layers; every method returns the new shape."""

    __slots__ = ("params", "macs")

    def __init__(self) -> None:
        self.params = 0
        self.macs = 0

    # convolutions and linear layers ---------------------------------------------------------------------------------

    def conv(self, shape: Shape, out: int, kernel: int | Sequence[int] = 1, stride: int | Sequence[int] = 1,
             padding: int | Sequence[int] | None = None, dilation: int | Sequence[int] = 1, groups: int = 1,
             bias: bool = False) -> Shape:
        c, h, w = _chw(shape, "convolution")
        (kh, kw), (sh, sw), (dh, dw) = pair(kernel), pair(stride), pair(dilation)
        ph, pw = same_padding((kh, kw), (dh, dw)) if padding is None else pair(padding)
        if c % groups or out % groups:
            raise ShapeError(f"convolution with groups={groups} needs channels divisible by it, "
                             f"got {c} in and {out} out")
        ho = _spatial(h, kh, sh, ph, dh, False)
        wo = _spatial(w, kw, sw, pw, dw, False)
        if ho < 1 or wo < 1:
            raise ShapeError(f"a {kh}x{kw} convolution (stride {sh}, dilation {dh}) does not fit an input of "
                             f"{h}x{w}")
        k = (c // groups) * kh * kw
        self.params += out * k + (out if bias else 0)
        self.macs += out * ho * wo * k
        return out, ho, wo

    def linear(self, shape: Shape, out: int, bias: bool = True) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"a linear layer needs a flat (C,) input, got {_fmt(shape)}; add a 'flatten' or "
                             f"'global_avg_pool' before it")
        self.params += shape[0] * out + (out if bias else 0)
        self.macs += shape[0] * out
        return (out,)

    # normalisation -------------------------------------------------------------------------------------------------

    def norm(self, shape: Shape, kind: str = "batch") -> Shape:
        """Batch norm costs 2 MACs per element in eval mode; group / layer / instance norm cost 5 (fvcore)."""
        if kind == "none":
            return shape
        self.params += 2 * shape[0]
        self.macs += numel(shape) * (2 if kind == "batch" else 5)
        return shape

    def add_params(self, n: int) -> None:
        """Parameters that touch no MAC rule (PReLU slopes, learned scalars)."""
        self.params += n

    # pooling and resampling ----------------------------------------------------------------------------------------

    def pool(self, shape: Shape, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: int | Sequence[int] = 0, ceil_mode: bool = False) -> Shape:
        c, h, w = _chw(shape, "pooling")
        (kh, kw) = pair(kernel)
        (sh, sw) = pair(kernel if stride is None else stride)
        (ph, pw) = pair(padding)
        if ph > kh // 2 or pw > kw // 2:
            raise ShapeError(f"pooling padding {padding} must be at most half the kernel {kernel}")
        ho = _spatial(h, kh, sh, ph, 1, ceil_mode)
        wo = _spatial(w, kw, sw, pw, 1, ceil_mode)
        if ho < 1 or wo < 1:
            raise ShapeError(f"a {kh}x{kw} pooling (stride {sh}) does not fit an input of {h}x{w}")
        return c, ho, wo

    def adaptive_avg(self, shape: Shape, size: int | Sequence[int] = 1) -> Shape:
        c, h, w = _chw(shape, "adaptive pooling")
        oh, ow = pair(size)
        self.macs += c * h * w
        return c, oh, ow

    def upsample(self, shape: Shape, size: Sequence[int] | None = None, scale: float | None = None,
                 mode: str = "nearest") -> Shape:
        c, h, w = _chw(shape, "upsampling")
        if size is None:
            size = (int(h * scale), int(w * scale))
        oh, ow = pair(size)
        self.macs += c * oh * ow * (4 if mode == "bilinear" else 1)
        return c, oh, ow

    def result(self, **outputs: Shape):
        """Finish: ``tally.result(out=shape)`` or several named outputs, in the order the module returns them."""
        return Inference(outputs=outputs, params=self.params, macs=self.macs)


def _chw(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a (C, H, W) feature map, got {_fmt(shape)}")
    return shape  # type: ignore[return-value]


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape)) if shape else "a scalar"


def fmt_shape(shape: Shape) -> str:
    """``(64, 56, 56)`` -> ``'64x56x56'``: the CLI's and the errors' way to print a shape."""
    return _fmt(shape)


def same_shapes(in_shapes: Sequence[Shape], what: str) -> Shape:
    """All inputs must have one shape (element-wise merges); return it or raise naming both shapes."""
    first = in_shapes[0]
    for i, s in enumerate(in_shapes[1:], start=1):
        if s != first:
            raise ShapeError(f"{what} needs inputs of one shape, got {_fmt(first)} (input 0) and {_fmt(s)} "
                             f"(input {i})")
    return first


def same_spatial(in_shapes: Sequence[Shape], what: str) -> tuple[int, int]:
    """All inputs must share H x W (concatenation); return it or raise naming both shapes."""
    first = _chw(in_shapes[0], what)
    for i, s in enumerate(in_shapes[1:], start=1):
        s = _chw(s, what)
        if s[1:] != first[1:]:
            raise ShapeError(f"{what} needs inputs of one height and width, got {_fmt(first)} (input 0) and "
                             f"{_fmt(s)} (input {i})")
    return first[1], first[2]


def infer_with(cls):
    """A block's ``infer`` from a module class whose ``tally(t, shape, **params)`` mirrors its ``__init__``.

    The pattern every built-in block follows: ``BlockSpec(..., module=MyBlock, infer=infer_with(MyBlock))``.
    """
    def infer(in_shapes, **params):
        t = Tally()
        return t.result(out=cls.tally(t, in_shapes[0], **params))
    infer.__qualname__ = f"infer_with({cls.__name__})"
    return infer

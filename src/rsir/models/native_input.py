"""Encoding multi-resolution patches without resampling them first (the fast path of ``rsir index``).

rsir's ResNet stem is a patch embedding: a k x k convolution with stride k and no padding (k = 4) on the
common grid, where the 20 m bands of Sentinel-2 were upsampled x2 and the 60 m bands x6 by bilinear
interpolation (rsir.data.bands). Both are linear, so the stem's response to a band group equals convolutions of
the group *at its native size*, edge-replicated (torch's bilinear interpolation clamps its source index at the
border, which is what a replicated edge gives):

* bands on the grid: the stem's own weights, stride k;
* 20 m bands (r = 2 pixels of the grid per native pixel): one convolution with stride k/r = 2 and a 4 x 4
  kernel, the composition of the interpolation weights and the stem's;
* 60 m bands (r = 6): the interpolation pattern repeats every P = 3 blocks of k = 4 grid pixels (two native
  pixels), so the P x P phases are P*P stacked kernels of one stride-2 convolution, whose outputs are
  interleaved into the stem's grid.

The kernels are worked out from torch's own interpolation weights and checked against them for every output
position when they are built (a band group that does not pass is resampled as before). The stem output is the
sum of the groups' convolutions plus the bias; the rest of the network is unchanged. This skips upsampling 8 of
Sentinel-2's 12 bands and copying every band into the 12-band stack. The network computes the same function;
the float sums run in another order, so outputs differ by float rounding (tests/models/test_native_input.py
bounds the difference and counts flipped code bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsir.data.bands import RESAMPLING, BandGroup, resample
from rsir.models.resnet import ResNet


class NativeStem:
    """The stem (convolution, folded batch norm, ReLU) of a fused :class:`ResNet` applied to native-size band
    groups of one layout; :meth:`features` runs the whole encoder."""

    def __init__(self, encoder: ResNet, layout: Sequence[tuple[tuple[int, int], list[int]]],
                 grid: tuple[int, int], parts: list[tuple[str, torch.Tensor, int, tuple[int, int], int]],
                 bias: torch.Tensor | None
                 ) -> None:
        self.encoder = encoder
        self.layout = [(tuple(s), list(i)) for s, i in layout]
        self.grid = grid
        self.parts = parts  # per group: (how, weight, stride, replicate padding (low, high), phases)
        self.bias = bias
        self.blocked: BlockedStages | None = None  # built on the first batch

    @classmethod
    def build(cls, encoder: ResNet, layout: Sequence[tuple[tuple[int, int], list[int]]],
              grid: tuple[int, int], mode: str = RESAMPLING) -> NativeStem | None:
        """The native stem of ``encoder`` (eval mode, batch norms folded: rsir.models.resnet.fuse_for_inference)
        for band groups of ``layout`` [(native shape, band positions)], or None when the stem is not a patch
        embedding or the resampling is not bilinear (the caller then assembles the grid as usual)."""
        conv = encoder.stem[0]
        if not isinstance(conv, nn.Conv2d) or not isinstance(encoder.stem[1], nn.Identity):
            return None
        k = int(conv.kernel_size[0])
        if (tuple(conv.kernel_size) != (k, k) or tuple(conv.stride) != (k, k) or tuple(conv.padding) != (0, 0)
                or conv.groups != 1 or tuple(conv.dilation) != (1, 1) or mode != "bilinear"
                or grid[0] != grid[1] or grid[0] % k):
            return None
        w = conv.weight.detach().float()
        parts: list[tuple[str, torch.Tensor, int, tuple[int, int], int]] = []
        for shape, idx in layout:
            wg = w[:, idx]
            taps = _taps(shape[0], grid[0], k) if shape[0] == shape[1] else None
            if taps is None:
                parts.append(("resample", wg.contiguous(), k, (0, 0), 1))
                continue
            a, step, pads = taps  # a: P x k x L
            # K[(ph, pw, o), c, u, v] = sum_{t, t'} W[o, c, t, t'] A[ph, t, u] A[pw, t', v]
            kern = torch.einsum("octs,atu,bsv->abocuv", wg, a, a).flatten(0, 2).contiguous()
            parts.append(("native", kern, step, pads, int(a.shape[0])))
        bias = conv.bias.detach().float() if conv.bias is not None else None
        return cls(encoder, layout, (int(grid[0]), int(grid[1])), parts, bias)

    def matches(self, groups: Sequence[BandGroup]) -> bool:
        """Whether ``groups`` have the layout this stem was built for."""
        return [(g.shape, g.idx) for g in groups] == self.layout

    def stem(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """The stem's output (after its ReLU) for the groups' normalised float32 tensors, in layout order."""
        y: torch.Tensor | None = None
        for (how, w, stride, (lo, hi), phases), t in zip(self.parts, tensors, strict=True):
            if how == "resample":
                t = resample(t, self.grid)
            elif lo or hi:
                t = F.pad(t, (lo, hi, lo, hi), mode="replicate")
            z = F.conv2d(t, w, None, stride)
            if phases > 1:  # N x (P, P, O) x b x b -> N x O x (b, P) x (b, P): block P b + phase
                n, _, b, _ = z.shape
                z = z.view(n, phases, phases, -1, b, b).permute(0, 3, 4, 1, 5, 2).reshape(n, -1, b * phases,
                                                                                         b * phases)
            y = z if y is None else y.add_(z)
        assert y is not None
        if self.bias is not None:
            y = y.add_(self.bias.view(1, -1, 1, 1))
        return y.relu_()

    def features(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """The encoder's pooled features (what ``encoder(x)`` gives for the assembled grid batch)."""
        e = self.encoder
        x = self.stem(tensors)
        if self.blocked is None:
            self.blocked = BlockedStages.build(e, tuple(x.shape[1:]))  # type: ignore[arg-type]
        if self.blocked:
            return e.pool(self.blocked(x)).flatten(1)  # type: ignore[no-any-return]
        return e.pool(e.stages(x.contiguous(memory_format=e.memory_format))).flatten(1)  # type: ignore[no-any-return]


class BlockedStages:
    """The residual stages of a fused :class:`ResNet` on oneDNN's blocked tensors, weights reordered once.

    torch's convolution on plain NCHW tensors reorders the activations into oneDNN's blocked layout and back,
    and the weights, at every call; here the activations stay blocked from the stem's output to the pooling and
    the weights are reordered when this is built. Same oneDNN kernels, same outputs (bit for bit on this
    machine, tests/models/test_native_input.py), about 25% less time on the stages on the 2-core machine.
    """

    def __init__(self, blocks: list[tuple[_Conv, _Conv, _Conv | None]]) -> None:
        self.blocks = blocks

    def __bool__(self) -> bool:
        return bool(self.blocks)

    @classmethod
    def build(cls, encoder: ResNet, shape: tuple[int, int, int], batch: int = 64) -> BlockedStages:
        """For stem outputs of ``shape`` (C, H, W); empty (falsy) where oneDNN is not available or a stage is
        not a BasicBlock of folded convolutions."""
        from rsir.models.resnet import BasicBlock

        if not torch.backends.mkldnn.is_available():
            return cls([])
        try:
            c, h, _ = shape
            blocks = []
            for b in encoder.stages:
                if not isinstance(b, BasicBlock) or not isinstance(b.bn1, nn.Identity):
                    return cls([])
                c1 = _Conv(b.conv1, (batch, c, h, h))
                h2 = (h + 2 * int(b.conv1.padding[0]) - b.conv1.kernel_size[0]) // b.conv1.stride[0] + 1
                c2 = _Conv(b.conv2, (batch, b.conv1.out_channels, h2, h2))
                sc = _Conv(b.short, (batch, c, h, h)) if isinstance(b.short, nn.Conv2d) else None
                if sc is None and not isinstance(b.short, nn.Identity):
                    return cls([])
                blocks.append((c1, c2, sc))
                c, h = b.conv2.out_channels, h2
            return cls(blocks)
        except (RuntimeError, AttributeError, TypeError):  # a torch without these oneDNN entry points
            return cls([])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to_mkldnn()
        for c1, c2, sc in self.blocks:
            z = c2(c1(y).relu_())
            y = z.add_(sc(y) if sc is not None else y).relu_()
        return y.to_dense()


class _Conv:
    """A convolution (with bias) on blocked tensors, its weight reordered for inputs of ``size``."""

    def __init__(self, conv: nn.Conv2d, size: tuple[int, int, int, int]) -> None:
        if conv.bias is None:
            raise TypeError("a folded convolution has a bias")
        self.padding = [int(v) for v in conv.padding]  # type: ignore[union-attr]
        self.stride, self.dilation = [int(v) for v in conv.stride], [int(v) for v in conv.dilation]
        self.groups = int(conv.groups)
        w = conv.weight.detach().float().contiguous().to_mkldnn()
        # (the stub lacks input_size, the operator has it: the layout is chosen for that input shape)
        reorder: Any = getattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")  # noqa: B009
        self.weight = reorder(w, self.padding, self.stride, self.dilation, self.groups, list(size))
        self.bias = conv.bias.detach().float().to_mkldnn()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                        self.groups)


def _taps(native: int, grid: int, k: int) -> tuple[torch.Tensor, int, tuple[int, int]] | None:
    """How torch's bilinear upsampling of a ``native``-pixel line to ``grid`` pixels (align_corners=False) feeds
    the stem's blocks of ``k`` grid pixels: (A, step, (pad low, pad high)) with A[phase, t, u] the weight of
    native pixel ``step * b - pad_low + u`` in grid pixel ``k * (P b + phase) + t`` of the edge-replicated
    line, P = A.shape[0]; None when no such pattern reproduces the interpolation exactly."""
    ratio = Fraction(k * native, grid)  # native pixels per block
    phases, step = ratio.denominator, ratio.numerator
    blocks = grid // k
    if grid % k or blocks % phases or blocks // phases < 3:
        return None
    eye = torch.eye(native, dtype=torch.float64)[:, None, :]  # one unit impulse per row
    m = F.interpolate(eye, size=grid, mode="linear", align_corners=False)[:, 0, :].T  # grid x native
    b = 1  # an interior period: no clamping
    cols = [int(c) - step * b for ph in range(phases) for t in range(k)
            for c in torch.nonzero(m[k * (phases * b + ph) + t]).flatten()]
    lo, size = -min(cols), max(cols) - min(cols) + 1
    a = torch.zeros(phases, k, size, dtype=torch.float64)
    for ph in range(phases):
        for t in range(k):
            a[ph, t] = m[k * (phases * b + ph) + t, step * b - lo:step * b - lo + size]
    hi = (blocks // phases - 1) * step + size - native - lo
    if lo < 0 or hi < 0:
        return None
    # rebuild the whole interpolation from A with clamped (edge-replicated) indices and compare
    rebuilt = torch.zeros_like(m)
    for q in range(blocks):
        for t in range(k):
            for u in range(size):
                rebuilt[k * q + t, min(max(step * (q // phases) - lo + u, 0), native - 1)] += a[q % phases, t, u]
    if not torch.allclose(rebuilt, m, atol=1e-12):
        return None
    return a.float(), step, (lo, hi)

"""The entropy model and the entropy coder of the learned codec.

:class:`FactorizedDensity` is the fully factorised prior of Ballé et al. ("Variational image compression with a
scale hyperprior", ICLR 2018, appendix 6.1): one learned univariate density per latent channel, its cumulative
c(x) a small monotone network ``f_K o ... o f_1`` with ``f_k(x) = g_k(H_k x + b_k)``, ``g_k(x) = x + a_k * tanh(x)``
(H_k kept positive with softplus, a_k squashed with tanh so that g_k stays monotone). The likelihood of an
integer latent value is ``c(y + 1/2) - c(y - 1/2)``; during training the latent carries additive uniform noise
instead of being rounded, and the same expression gives the density of the noisy latent (the rate term).

For coding, :meth:`FactorizedDensity.update_tables` turns each channel's density into a fixed-point table: the
integer support [lo, hi] that holds all but 1e-6 of the mass (at most ``max_half`` symbols either side of 0),
plus one escape symbol for values outside it, quantised to counts summing to 2**16 (each at least 1). The tables
are buffers, saved with the weights, so an encoder and a decoder on different machines agree bit for bit.

:class:`LatentCoder` entropy-codes integer latents with those tables through constriction's ANS coder
(``constriction.stream.stack.AnsCoder`` with ``Categorical`` models; escaped values with a uniform model over
the int16 range). :func:`pack` / :func:`unpack` frame a stream as ``magic | C h w | words | crc32 | payload``
so that a truncated or damaged stream is detected instead of decoding to garbage.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = b"RJC1"
_HEADER = struct.Struct("<4sHHHII")  # magic, C, h, w, payload words, crc32 of the payload
TOTAL = 1 << 16
TAIL_MASS = 1e-6
INT16 = (-(1 << 15), (1 << 15) - 1)


class BitstreamError(ValueError):
    """A bitstream that is truncated, damaged or of another shape than the codec's."""


class FactorizedDensity(torch.nn.Module):
    """One learned univariate density per channel (Ballé 2018 fully factorised prior)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 max_half: int = 255) -> None:
        super().__init__()
        self.channels = channels
        self.max_half = max_half
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        self.factors = torch.nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(torch.nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(torch.nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.factors.append(torch.nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))
        # coding tables (update_tables): counts C x (S + 1) (last used column = escape), lo and size per channel
        self.register_buffer("table", torch.zeros(channels, 1, dtype=torch.int32))
        self.register_buffer("lo", torch.zeros(channels, dtype=torch.int32))
        self.register_buffer("size", torch.zeros(channels, dtype=torch.int32))

    def _logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """Logit of the cumulative at v (C x 1 x M)."""
        x = v
        last = len(self.matrices) - 1
        for k in range(len(self.matrices)):
            x = torch.matmul(F.softplus(self.matrices[k]), x) + self.biases[k]
            if k < last:
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """p(y) = c(y + 1/2) - c(y - 1/2) per element of an N x C x H x W tensor (at least 1e-9)."""
        n, c, h, w = y.shape
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        # evaluate in the tail where the sigmoid is not saturated: 1 - s(a) = s(-a)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.clamp_min(1e-9).reshape(c, n, h, w).transpose(0, 1)

    @torch.no_grad()
    def update_tables(self) -> None:
        """Fixed-point coding tables from the current density (call after training, before saving)."""
        r = self.max_half
        grid = torch.arange(-r, r + 1, dtype=torch.float32)
        v = grid.reshape(1, 1, -1).expand(self.channels, 1, -1)
        lower = torch.sigmoid(self._logits_cdf(v - 0.5)).reshape(self.channels, -1).double()
        upper = torch.sigmoid(self._logits_cdf(v + 0.5)).reshape(self.channels, -1).double()
        pmf = (upper - lower).clamp_min(0.0).numpy()
        below = lower[:, 0].numpy()  # mass under -r - 1/2
        tables, los, sizes = [], [], []
        for c in range(self.channels):
            p = pmf[c]
            cum = np.cumsum(p)
            under = below[c] + np.concatenate([[0.0], cum[:-1]])  # mass strictly below each grid value
            over = 1.0 - below[c] - cum  # mass strictly above each grid value
            lo_i = max(int(np.searchsorted(under, TAIL_MASS / 2, side="right")) - 1, 0)
            hi_i = int(np.argmax(over <= TAIL_MASS / 2)) if (over <= TAIL_MASS / 2).any() else len(p) - 1
            hi_i = min(max(hi_i, lo_i), len(p) - 1)
            inside = p[lo_i:hi_i + 1]
            escape = max(1.0 - float(inside.sum()), 0.0)
            tables.append(_quantise(np.append(inside, escape)))
            los.append(lo_i - r)
            sizes.append(hi_i - lo_i + 1)
        width = max(len(t) for t in tables)
        tab = np.zeros((self.channels, width), np.int32)
        for c, t in enumerate(tables):
            tab[c, :len(t)] = t
        self.table = torch.from_numpy(tab)
        self.lo = torch.tensor(los, dtype=torch.int32)
        self.size = torch.tensor(sizes, dtype=torch.int32)

    @property
    def has_tables(self) -> bool:
        return bool(int(self.size.sum()) > 0)


def _quantise(p: np.ndarray) -> np.ndarray:
    """Integer counts summing to TOTAL, each at least 1, proportional to ``p`` (largest-remainder rounding)."""
    k = len(p)
    p = np.maximum(np.asarray(p, np.float64), 0.0)
    p = p / p.sum() if p.sum() > 0 else np.full(k, 1.0 / k)
    spare = TOTAL - k
    raw = p * spare
    counts = np.floor(raw).astype(np.int64)
    short = spare - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return (counts + 1).astype(np.int32)


class LatentCoder:
    """Entropy-codes C x h x w integer latents with a density's fixed-point tables (constriction ANS)."""

    def __init__(self, density: FactorizedDensity) -> None:
        import constriction

        if not density.has_tables:
            raise BitstreamError("the codec has no coding tables (update_tables() was not run after training)")
        self._cs = constriction
        tab = density.table.numpy().astype(np.float64)
        self.lo = density.lo.numpy().astype(np.int64)
        self.size = density.size.numpy().astype(np.int64)
        self.channels = len(self.lo)
        self.models = [constriction.stream.model.Categorical(tab[c, :self.size[c] + 1] / TOTAL, perfect=False)
                       for c in range(self.channels)]
        self.escape_model = constriction.stream.model.Uniform(1 << 16)

    def encode(self, sym: np.ndarray) -> bytes:
        """Bitstream (with header and checksum) of one C x h x w integer latent."""
        sym = np.asarray(sym)
        if sym.ndim != 3 or sym.shape[0] != self.channels:
            raise BitstreamError(f"latent of shape {sym.shape}, the codec has {self.channels} channels")
        c, h, w = sym.shape
        flat = sym.reshape(c, -1).astype(np.int64)
        idx = flat - self.lo[:, None]
        out = (idx < 0) | (idx >= self.size[:, None])
        idx = np.where(out, self.size[:, None], idx).astype(np.int32)
        escaped = (np.clip(flat[out], *INT16) - INT16[0]).astype(np.int32)  # channel-major order
        coder = self._cs.stream.stack.AnsCoder()
        if escaped.size:
            coder.encode_reverse(escaped, self.escape_model)
        for ch in range(c - 1, -1, -1):
            coder.encode_reverse(idx[ch], self.models[ch])
        return pack(c, h, w, coder.get_compressed())

    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The C x h x w int32 latent of a bitstream (BitstreamError when it is damaged or of another shape)."""
        c, h, w, words = unpack(data)
        if c != self.channels:
            raise BitstreamError(f"bitstream has {c} latent channels, the codec {self.channels}")
        if shape is not None and (h, w) != tuple(shape):
            raise BitstreamError(f"bitstream latent is {h}x{w}, expected {shape[0]}x{shape[1]}")
        coder = self._cs.stream.stack.AnsCoder(words)
        out = np.empty((c, h * w), np.int64)
        try:
            for ch in range(c):
                out[ch] = coder.decode(self.models[ch], h * w)
            esc = out == self.size[:, None]
            n_esc = int(esc.sum())
            values = out - 0
            values += self.lo[:, None]
            if n_esc:
                values[esc] = coder.decode(self.escape_model, n_esc).astype(np.int64) + INT16[0]
        except Exception as e:  # constriction raises on streams that run out
            raise BitstreamError(f"entropy decoding failed ({type(e).__name__}: {e})") from None
        if not coder.is_empty():
            raise BitstreamError("entropy decoding left unread data (damaged stream)")
        return values.reshape(c, h, w).astype(np.int32)


def pack(c: int, h: int, w: int, words: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(words, dtype="<u4").tobytes()
    return _HEADER.pack(MAGIC, c, h, w, len(words), zlib.crc32(payload)) + payload


def unpack(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """(C, h, w, payload words) of a framed bitstream; BitstreamError for truncated or damaged data."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise BitstreamError(f"bitstream truncated: {len(data)} bytes, the header alone is {_HEADER.size}")
    magic, c, h, w, n, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"not a codec bitstream (starts with {magic!r}, expected {MAGIC!r})")
    payload = data[_HEADER.size:]
    if len(payload) != 4 * n:
        raise BitstreamError(f"bitstream truncated or padded: payload of {len(payload)} bytes, header says {4 * n}")
    if zlib.crc32(payload) != crc:
        raise BitstreamError("bitstream damaged: checksum mismatch")
    return c, h, w, np.frombuffer(payload, dtype="<u4").astype(np.uint32)

"""A decoder LM built from ``core`` blocks that answers questions about audio, with the ways audio can enter it
compared by PAL (Alex et al. 2025, "PAL: Probing Audio Encoders via LLMs", arXiv 2506.10423).

Text: ``<bos> question <ans>`` -> the next-word logits at ``<ans>`` [B, vocab]. Audio: per encoder a connector
maps features [B, T, D] to tokens [B, T', dim]; an ensemble concatenates the encoders' tokens (each encoder with
its own connector and type embedding). ``integration``:

- ``plits``: audio tokens prepended to the text at layer ``start`` (0: the input, as LLaVA / LTU / SALMONN) and
  processed by every later layer, FFN and residual stream included (prefix-LM mask: audio sees audio, text sees
  audio and earlier text). ``start > 0`` is delayed integration: the first layers see text only.
- ``lal`` (attention-only): from layer ``start`` on, each layer l adds ``P_l(audio)`` as keys and values of its
  self-attention (queries from text only; no FFN, no residual stream for audio). Cost per layer
  O(Nt (Na + Nt)) instead of O((Na + Nt)^2).
- ``pal``: ``summary`` resampler tokens by PLITS plus the full sequence by LAL.
- ``lal_summary``: PAL's parameters exactly, every token by LAL (the summary tokens join the LAL keys): the
  parameter-matched control that isolates PAL's PLITS route from its extra parameters.
- ``xattn``: Flamingo's gated cross-attention (Alayrac et al. 2022): before each block from ``start`` on,
  ``h += tanh(a) xattn(LN(h), audio)``, ``h += tanh(b) FFN(LN(h))``, gates a, b starting at 0.

Connectors: ``mlp`` (LLaVA-1.5's projector: ``stride`` frames stacked, Linear-GELU-Linear) or ``resampler``
(Perceiver / Q-Former style: ``latents`` learnable queries cross-attending to the features). Stage 0 trains the LM
with an *oracle* in the audio slot (the item's labels as word embeddings) -- ``forward(..., oracle=ids)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from apps.audio.questions import PAD
from core.attention import Attention
from core.blocks import Block
from core.ffn import build_ffn

INTEGRATIONS = ("plits", "lal", "pal", "lal_summary", "xattn")
SUMMARISED = ("pal", "lal_summary")  # integrations with summary resamplers
BY_LAL = ("lal", "pal", "lal_summary")  # integrations with per-layer LAL projections
CONNECTORS = ("mlp", "resampler")


class Standardize(nn.Module):
    """(x - mean) / std per feature, with the training split's statistics (``set_``); unlike a LayerNorm over
    the features it keeps a frame's level (loudness is in the mean of the log-mel bands)."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))

    def set_(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-4))

    def forward(self, x):
        return (x - self.mean) / self.std


def sinusoid(n: int, dim: int, device=None) -> torch.Tensor:
    """[n, dim] fixed position code of n tokens (Vaswani et al. 2017): sin and cos at dim / 2 frequencies. Frame
    features (log-mel, MFCC) carry no position of their own, and attention over a set of keys is blind to their
    order, so without it "which digit came second" can only be guessed among the digits heard."""
    ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * torch.exp(
        -math.log(1e4) * torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    return torch.cat([ang.sin(), ang.cos()], -1)[:, :dim]


def _positioned(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` [B, T, dim] + its position code (a model pickled before positions existed stays as it was trained)."""
    return x + sinusoid(x.shape[1], x.shape[2], x.device) if getattr(module, "positions", False) else x


class MLPConnector(nn.Module):
    """features [B, T, D], mask [B, T] -> tokens [B, ceil(T / stride), dim] (+ their position code), mask."""

    def __init__(self, in_dim: int, dim: int, stride: int = 4):
        super().__init__()
        self.stride, self.positions = stride, True
        self.norm = Standardize(in_dim)
        self.proj = nn.Sequential(nn.Linear(in_dim * stride, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x, mask):
        b, t, d = x.shape
        pad = -t % self.stride
        x = F.pad(self.norm(x) * mask[..., None], (0, 0, 0, pad))
        m = F.pad(mask, (0, pad)).view(b, -1, self.stride).any(-1)
        return _positioned(self, self.proj(x.reshape(b, -1, d * self.stride))), m


def cross_mask(cmask: torch.Tensor, nq: int) -> torch.Tensor:
    """Cross-attention through :class:`Attention`'s context keys: [B, 1, nq, Nc + nq], queries see the valid
    context (``cmask`` [B, Nc]) and none of their own keys."""
    b, nc = cmask.shape
    m = torch.zeros(b, 1, nq, nc + nq, dtype=torch.bool, device=cmask.device)
    m[..., :nc] = cmask[:, None, None, :]
    return m


class Resampler(nn.Module):
    """``latents`` learnable queries cross-attend to the features (+ their position code): [B, T, D] ->
    [B, latents, dim] (all visible)."""

    def __init__(self, in_dim: int, dim: int, latents: int = 8, heads: int = 4):
        super().__init__()
        self.norm, self.inp = Standardize(in_dim), nn.Linear(in_dim, dim)
        self.latents = nn.Parameter(torch.randn(latents, dim) * 0.02)
        self.attn = Attention(dim, heads)
        self.ffn = build_ffn("mlp", dim, hidden=2 * dim)
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mask = torch.ones(latents, dtype=torch.bool)
        self.positions = True

    def forward(self, x, mask):
        b = x.shape[0]
        ctx = _positioned(self, self.inp(self.norm(x)))
        q = self.latents.expand(b, -1, -1)
        h = q + self.attn(self.n1(q), attn_mask=cross_mask(mask, q.shape[1]), context=ctx)  # latents read features
        h = h + self.ffn(self.n2(h))
        return h, self.mask.to(x.device).expand(b, -1)


def build_connector(kind: str, in_dim: int, dim: int, stride: int, latents: int) -> nn.Module:
    if kind == "mlp":
        return MLPConnector(in_dim, dim, stride)
    if kind == "resampler":
        return Resampler(in_dim, dim, latents)
    raise ValueError(f"unknown connector {kind!r}; choose from {', '.join(CONNECTORS)}")


class GatedCrossAttention(nn.Module):
    """Flamingo's block: h + tanh(a) xattn(LN(h), audio), then + tanh(b) FFN(LN(h)); a = b = 0 at the start."""

    def __init__(self, dim: int, heads: int, ffn: str, ffn_kw: dict | None):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ffn = build_ffn(ffn, dim, hidden=4 * dim, **(ffn_kw or {}))
        self.gate_attn, self.gate_ffn = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))

    def forward(self, h, audio, amask):
        h = h + torch.tanh(self.gate_attn) * self.attn(self.n1(h), attn_mask=cross_mask(amask, h.shape[1]),
                                                       context=audio)
        return h + torch.tanh(self.gate_ffn) * self.ffn(self.n2(h))


class AudioSources(nn.Module):
    """What every audio LM here shares: per encoder a connector (and PAL's summary resampler) and a type embedding,
    and the oracle of stage 0 (the labels' word embeddings, ``self.embed_words``) in the audio slot."""

    def _build_sources(self, feature_dims: dict[str, int], dim: int, integration: str, connector: str, stride: int,
                       latents: int, summary: int) -> None:
        names = sorted(feature_dims)
        self.names = names
        self.connectors = nn.ModuleDict({n: build_connector(connector, feature_dims[n], dim, stride, latents)
                                         for n in names})
        self.summaries = nn.ModuleDict({n: Resampler(feature_dims[n], dim, summary) for n in names}
                                       if integration in SUMMARISED else {})
        self.kind = nn.Parameter(torch.randn(len(names) + 1, dim) * 0.02)  # per encoder (+ the oracle) type
        self.positions = True  # the oracle's words in order, like the connectors' tokens

    def embed_words(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def connector_parameters(self):
        """What trains while the LM is frozen: connectors, summaries, per-layer LAL projections, gated
        cross-attention (where the model has them), type embeddings."""
        for name in ("connectors", "summaries", "lal", "xattn"):
            if hasattr(self, name):
                yield from getattr(self, name).parameters()
        yield self.kind

    def set_feature_stats(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Encoder name -> (mean, std) of its features on the training split (``AudioQA.feature_stats()``)."""
        for mods in (self.connectors, self.summaries):
            for n, c in mods.items():
                c.norm.set_(*stats[n])

    def routes(self, audio: dict | None, oracle: torch.Tensor | None, pad: int = PAD):
        """-> (prefix, context): the (tokens [B, N, dim], mask [B, N]) that enter as PLITS tokens and as LAL /
        cross-attention keys, or None for each."""
        full, summ = self._sources(audio, oracle, pad)
        if self.integration == "plits":
            return full, None
        if self.integration == "pal":
            return summ, full
        if self.integration == "lal_summary" and oracle is None and full is not None:
            return None, (torch.cat([full[0], summ[0]], 1), torch.cat([full[1], summ[1]], 1))
        return None, full

    def _sources(self, audio: dict | None, oracle: torch.Tensor | None, pad: int = PAD):
        """-> (full tokens [B, Na, dim], mask), (summary tokens, mask) or None for each."""
        if oracle is not None:  # stage 0: the labels' word embeddings stand in for every encoder
            m = oracle != pad
            tok = _positioned(self, self.embed_words(oracle.masked_fill(~m, 0))) + self.kind[-1]
            if self.integration == "pal":
                return (tok, m), (tok, m)
            return (tok, m), None
        if audio is None:
            return None, None
        full, summ = [], []
        for i, n in enumerate(self.names):
            x, m = audio[n]
            if n in self.connectors:
                t, tm = self.connectors[n](x, m)
                full.append((t + self.kind[i], tm))
            if n in self.summaries:
                t, tm = self.summaries[n](x, m)
                summ.append((t + self.kind[i], tm))

        def cat(parts):
            return (torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)) if parts else None
        return cat(full), cat(summ)


class AudioLM(AudioSources):
    """Question tokens [B, Nt] (+ audio features per encoder) -> answer logits [B, vocab].

    Args:
        vocab: vocabulary size.
        feature_dims: encoder name -> feature width (the data module's ``feature_dims()``).
        integration: plits, lal, pal or xattn (see the module docstring).
        start: first layer that sees the audio (0: all; > 0: delayed integration).
        connector: mlp or resampler.
        dim: the LM's width.
        depth: the LM's layers (blocks).
        heads: attention heads per layer.
        ffn: the FFN of every block (core.ffn registry).
        ffn_kw: the FFN variant's own options.
        stride: frames stacked per token by the MLP connector.
        latents: tokens of a resampler connector.
        summary: PAL's summary tokens per encoder (a resampler, by PLITS).
        drop: dropout in the FFNs.
        max_text: longest question in tokens.
    """

    def __init__(self, vocab: int, feature_dims: dict[str, int], integration: str = "lal", start: int = 0,
                 connector: str = "mlp", dim: int = 64, depth: int = 4, heads: int = 4, ffn: str = "mlp",
                 ffn_kw: dict | None = None, stride: int = 4, latents: int = 8, summary: int = 4,
                 drop: float = 0.1, max_text: int = 32):
        super().__init__()
        if integration not in INTEGRATIONS:
            raise ValueError(f"unknown integration {integration!r}; choose from {', '.join(INTEGRATIONS)}")
        if not 0 <= start < depth:
            raise ValueError(f"start {start} must be a layer index in [0, {depth})")
        self.integration, self.start, self.depth = integration, start, depth
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(max_text, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, "attention", ffn, hidden=4 * dim, drop=drop, norm="pre", heads=heads,
                                          ffn_kw=ffn_kw) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied, as GPT-2
        self._build_sources(feature_dims, dim, integration, connector, stride, latents, summary)
        layers = range(start, depth)
        self.lal = nn.ModuleDict({str(i): nn.Linear(dim, dim) for i in layers} if integration in BY_LAL
                                 else {})
        self.xattn = nn.ModuleDict({str(i): GatedCrossAttention(dim, heads, ffn, ffn_kw) for i in layers}
                                   if integration == "xattn" else {})

    # which parameters each training stage updates
    def embed_words(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids)

    def forward(self, tokens, audio: dict | None = None, oracle: torch.Tensor | None = None,
                hidden: list | None = None):
        """tokens [B, Nt]; audio: name -> (features [B, T, D], mask [B, T]) or None (blind); oracle [B, No] word
        ids (stage 0). ``hidden``: a list that receives each layer's text states [B, Nt, dim]. -> [B, vocab]."""
        b, nt = tokens.shape
        h = self.embed(tokens) + self.pos[:nt]
        prefix, context = self.routes(audio, oracle)
        na = 0
        for i, blk in enumerate(self.blocks):
            if i == self.start and prefix is not None:
                na = prefix[0].shape[1]
                h = torch.cat([prefix[0], h], 1)
                mask = self._prefix_mask(prefix[1], nt)
            kw = {"attn_mask": mask} if na else {"attn_mask": self._causal(b, nt, h.device)}
            if i >= self.start and context is not None:
                if self.integration == "xattn":
                    h = torch.cat([h[:, :na], self.xattn[str(i)](h[:, na:], *context)], 1)
                else:
                    ctx = self.lal[str(i)](context[0])
                    kw = {"attn_mask": self._lal_mask(context[1], na, nt, kw["attn_mask"]), "context": ctx}
            h = blk(h, **kw)
            if hidden is not None:
                hidden.append(h[:, na:])
        h = self.norm(h[:, na:])
        last = (tokens != PAD).sum(1) - 1  # the <ans> position
        return self.head(h[torch.arange(b), last])

    @staticmethod
    def _causal(b, n, device):
        return torch.ones(n, n, dtype=torch.bool, device=device).tril().expand(b, 1, n, n)

    @staticmethod
    def _prefix_mask(amask, nt):
        """[B, 1, Na + Nt, Na + Nt]: audio rows see valid audio; text rows see valid audio and earlier text."""
        b, na = amask.shape
        m = torch.zeros(b, 1, na + nt, na + nt, dtype=torch.bool, device=amask.device)
        m[..., :na] = amask[:, None, None, :]
        m[..., na:, na:] = torch.ones(nt, nt, dtype=torch.bool, device=amask.device).tril()
        m[..., torch.arange(na), torch.arange(na)] = True  # a padded audio row sees itself (no empty softmax)
        return m

    @staticmethod
    def _lal_mask(cmask, na, nt, inner):
        """LAL keys [context, prefix + text]: every row sees the valid context, then ``inner``."""
        b = cmask.shape[0]
        return torch.cat([cmask[:, None, None, :].expand(b, 1, na + nt, -1), inner.expand(b, 1, na + nt, na + nt)],
                         -1)

"""netFound-style hierarchical flow encoder (Guthula et al., "netFound: Foundation Model for Network Security").

packets [B, NB, P, F] -> per packet the sum of one embedding per header field (+ the first payload bytes, each
byte with its own table per position) + position -> a burst encoder over [CLS, P packets] of each burst ->
burst vectors + embeddings of the burst's metadata (direction, packets, bytes, gap before it) + position -> a
flow encoder over [CLS(flow fields: protocol, ports when unmasked), NB bursts] -> the flow vector -> class logits.
Both encoders are ``core.blocks.Encoder`` (pre-norm attention + a ``core.ffn`` variant: ``--model.ffn``).
``hierarchy="interleaved"`` (the default, as netFound): layer l runs the burst block l on every burst's [CLS,
packets], then the flow block l over [flow CLS, the bursts' CLS tokens], and writes each burst's flow-level output
back into its CLS token, so from the second layer on a packet attends to a summary that has seen the other bursts.
``"stacked"``: all burst blocks, then all flow blocks (the ablation).
Padding packets are all-zero tokens (embedding index 0 is a zero vector: they enter as position only); empty
bursts skip the burst encoder (their state is zero) and enter the flow encoder as position only.
"""
from __future__ import annotations

import torch
from torch import nn

from apps.traffic.features import BURST_FIELDS, BURST_VOCAB, FLOW_FIELDS, FLOW_VOCAB, PACKET_FIELDS, VOCAB
from core.blocks import Encoder


class NetFound(nn.Module):
    """Hierarchical transformer over bursts of packets; ``encode`` also returns per-packet states for pretraining.

    Args:
        d_model: token width.
        burst_layers: blocks of the burst (packet-level) encoder.
        flow_layers: blocks of the flow (burst-level) encoder.
        heads: attention heads.
        ffn: the blocks' FFN variant (core.ffn).
        ffn_kw: the FFN variant's own options.
        dropout: dropout in the blocks and before the head.
        hierarchy: interleaved (netFound: a burst layer, then a flow layer that writes back into the bursts' CLS
            tokens, per layer; needs burst_layers == flow_layers) or stacked (every burst layer, then every flow
            layer).
    """

    def __init__(self, n_classes: int, bursts: int = 12, burst_packets: int = 6, payload_bytes: int = 0,
                 d_model: int = 64, burst_layers: int = 2, flow_layers: int = 2, heads: int = 4, ffn: str = "mlp",
                 ffn_kw: dict | None = None, dropout: float = 0.1, hierarchy: str = "interleaved"):
        super().__init__()
        if hierarchy not in ("interleaved", "stacked"):
            raise ValueError(f"hierarchy: interleaved or stacked, got {hierarchy!r}")
        if hierarchy == "interleaved" and burst_layers != flow_layers:
            raise ValueError(f"an interleaved hierarchy pairs layers: burst_layers ({burst_layers}) must equal "
                             f"flow_layers ({flow_layers}), or use hierarchy stacked")
        self.hierarchy = hierarchy
        d = d_model
        self.packet_emb = nn.ModuleList(nn.Embedding(VOCAB[f], d, padding_idx=0) for f in PACKET_FIELDS)
        self.payload_emb = nn.Embedding(payload_bytes * 257, d, padding_idx=0) if payload_bytes else None
        self.burst_emb = nn.ModuleList(nn.Embedding(BURST_VOCAB[f], d, padding_idx=0) for f in BURST_FIELDS)
        self.flow_emb = nn.ModuleList(nn.Embedding(FLOW_VOCAB[f], d, padding_idx=0) for f in FLOW_FIELDS)
        self.packet_pos = nn.Parameter(torch.randn(burst_packets + 1, d) * 0.02)
        self.burst_pos = nn.Parameter(torch.randn(bursts + 1, d) * 0.02)
        self.burst_cls = nn.Parameter(torch.randn(d) * 0.02)
        self.flow_cls = nn.Parameter(torch.randn(d) * 0.02)
        self.mask_vec = nn.Parameter(torch.randn(d) * 0.02)  # added to packets whose fields are masked (pretraining)
        kw = dict(mixer="attention", ffn=ffn, hidden=2 * d, drop=dropout, norm="pre", heads=heads, ffn_kw=ffn_kw)
        self.burst_encoder = Encoder(burst_layers, d, **kw)
        self.flow_encoder = Encoder(flow_layers, d, **kw)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d, n_classes)
        self.d_model = d

    def encode(self, packets, bursts, flow, payload, masked=None):
        """-> (flow vector [B, d], packet states [B, NB, P, d] with their burst's flow-level state added)."""
        b, nb, p, _ = packets.shape
        x = sum(emb(packets[..., i]) for i, emb in enumerate(self.packet_emb))
        if self.payload_emb is not None and payload.shape[-1]:
            offs = torch.arange(payload.shape[-1], device=payload.device) * 257
            x = x + self.payload_emb(torch.where(payload > 0, payload + offs, 0)).sum(-2)
        if masked is not None:
            x = x + masked[..., None] * self.mask_vec
        x = (torch.cat([self.burst_cls.expand(b, nb, 1, -1), x], dim=2) + self.packet_pos).reshape(b * nb, p + 1, -1)
        real = (packets[..., 0] > 0).any(-1).reshape(-1)  # most flows have few bursts: encode only real ones
        meta = sum(emb(bursts[..., i]) for i, emb in enumerate(self.burst_emb))
        cls = self.flow_cls + sum(emb(flow[:, i]) for i, emb in enumerate(self.flow_emb))
        if getattr(self, "hierarchy", "stacked") == "stacked":  # models pickled before the option were stacked
            h = x.new_zeros(x.shape).index_put((real,), self.burst_encoder(x[real])).reshape(b, nb, p + 1, -1)
            g = self.flow_encoder(torch.cat([cls[:, None], h[:, :, 0] + meta], dim=1) + self.burst_pos)
            return g[:, 0], h[:, :, 1:] + g[:, 1:, None]
        h = x.new_zeros(x.shape)
        f = cls[:, None]
        for l, (burst_block, flow_block) in enumerate(zip(self.burst_encoder.blocks, self.flow_encoder.blocks)):
            h = h.index_put((real,), burst_block(x[real]))
            z = h.reshape(b, nb, p + 1, -1)[:, :, 0]
            g = flow_block(torch.cat([f, z + meta if l == 0 else z], dim=1) + (self.burst_pos if l == 0 else 0))
            f = g[:, :1]
            x = torch.cat([g[:, 1:].reshape(b * nb, 1, -1), h[:, 1:]], dim=1)  # flow outputs back into burst CLS
        h = self.burst_encoder.norm(x).reshape(b, nb, p + 1, -1)
        g = self.flow_encoder.norm(torch.cat([f, g[:, 1:]], dim=1))
        return g[:, 0], h[:, :, 1:] + g[:, 1:, None]

    def forward(self, packets, bursts, flow, payload):
        """-> class logits [B, n_classes]."""
        return self.head(self.drop(self.encode(packets, bursts, flow, payload)[0]))


MODELS = ("netfound",)


def build_model(name: str, n_classes: int, **kw) -> nn.Module:
    if name != "netfound":
        raise ValueError(f"unknown traffic model {name!r}; known: {', '.join(MODELS)} (the tree baseline is gbm, "
                         f"reported beside every run)")
    return NetFound(n_classes, **kw)

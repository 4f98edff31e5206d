"""Vessel-position forecasters over a window of AIS reports as they arrived: x[B, L, F] -> correction[B, H, 2].

Every model predicts a correction to dead reckoning (DR, the last report's SOG along its COG), in units of the
training split's RMS DR error per horizon; the task adds it to the DR displacement. So a model that outputs 0 is
exactly dead reckoning, and learning starts from the strong baseline.

- ``spadon``: the model of Spadon, Ferreira, Soares, Matwin (IEEE Access 2023): a 1-D convolutional feature
  extractor over the message sequence, a bidirectional ("multi-directional") LSTM, and a feed-forward head, here a
  ``core.ffn`` variant (``ffn``), so ``--model.ffn`` swaps it. The paper stacks LSTM layers (``layers=2``); the
  default is one narrow layer with more dropout, which won on validation over 5 folds x 3 seeds (README; the
  ``WIDE`` recipe is the earlier, paper-shaped default).
- ``rnn`` / ``gru`` / ``lstm``: the paper's baselines, one-directional recurrent nets with a linear head.
- ``transformer`` / ``mamba``: a ``core.blocks.Encoder`` (attention or Mamba mixer) over the same reports.

``members > 1`` makes any of them a deep ensemble (Lakshminarayanan, Pritzel, Blundell, NeurIPS 2017): that many
copies from different initialisations, trained in one run as if separately (each on its own loss, its own shuffle
of the data and kept at its own best validation epoch), predicting the mean of their corrections.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from core.blocks import Encoder
from core.ffn import build_ffn


class Spadon(nn.Module):
    """Conv1d feature extractor -> bidirectional LSTM -> FFN head (core.ffn).

    Args:
        channels: convolution channels.
        kernel: convolution width (reports).
        hidden: LSTM hidden size per direction.
        layers: LSTM layers.
        dropout: dropout between LSTM layers and in the head.
        ffn: the head's FFN variant (core.ffn).
        ffn_kw: the FFN variant's own options.
    """

    def __init__(self, n_features: int, horizons: int, channels: int = 32, kernel: int = 3, hidden: int = 32,
                 layers: int = 1, dropout: float = 0.3, ffn: str = "mlp", ffn_kw: dict | None = None):
        super().__init__()
        self.horizons = horizons
        self.conv = nn.Sequential(nn.Conv1d(n_features, channels, kernel, padding=kernel // 2), nn.GELU(),
                                  nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.GELU())
        self.lstm = nn.LSTM(channels + n_features, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = build_ffn(ffn, 2 * hidden, hidden=2 * hidden, out=2 * horizons, drop=dropout, **(ffn_kw or {}))

    def forward(self, x):
        h = torch.cat([self.conv(x.transpose(1, 2)).transpose(1, 2), x], -1)  # conv features + the raw report
        return self.head(self.features(h)).view(-1, self.horizons, 2)

    def features(self, h):
        """[B, L, C] -> [B, 2 hidden]: the last layer's final state of each direction: the forward one after the
        newest report, the backward one after the oldest, so both have read the whole window (the backward half
        of ``out[:, -1]`` would have seen the newest report only)."""
        _, (h_n, _) = self.lstm(h)
        return torch.cat([h_n[-2], h_n[-1]], -1)


class Recurrent(nn.Module):
    """Elman RNN, GRU or LSTM over the reports, linear head on the last state.

    Args:
        hidden: recurrent hidden size.
        layers: recurrent layers.
    """

    def __init__(self, n_features: int, horizons: int, cell: str = "lstm", hidden: int = 64, layers: int = 1):
        super().__init__()
        self.horizons = horizons
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](n_features, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, 2 * horizons)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).view(-1, self.horizons, 2)


class ReportEncoder(nn.Module):
    """Reports as tokens through ``core.blocks.Encoder`` (attention or Mamba mixer + FFN), head on the last token.

    Args:
        d_model: token width.
        layers: encoder blocks.
        heads: attention heads.
        ffn: the blocks' FFN variant (core.ffn).
        ffn_kw: the FFN variant's own options.
        dropout: dropout in the blocks.
    """

    def __init__(self, n_features: int, horizons: int, mixer: str = "attention", d_model: int = 64, layers: int = 2,
                 heads: int = 4, ffn: str = "mlp", ffn_kw: dict | None = None, dropout: float = 0.1):
        super().__init__()
        self.horizons = horizons
        self.embed = nn.Linear(n_features, d_model)
        self.encoder = Encoder(layers, d_model, mixer=mixer, ffn=ffn, hidden=2 * d_model, drop=dropout,
                               norm="pre", heads=heads, causal=True, d_state=8, ffn_kw=ffn_kw)
        self.head = nn.Linear(d_model, 2 * horizons)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x))[:, -1]).view(-1, self.horizons, 2)


class Ensemble(nn.Module):
    """K members x[B, L, F] -> correction[B, H, 2], averaged over the ``kept`` copies: member k as of its own best
    validation error (:meth:`keep_best`), so members stop at their own epochs as separately trained models do.

    ``member_outputs(x)`` -> [K, B, H, 2] from the training members (each learns on its own loss: no co-adaptation
    through the mean); with ``streams=True`` x is [K * B, ...], K chunks, member k fed chunk k.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.kept = copy.deepcopy(self.members).requires_grad_(False)
        self.register_buffer("best", torch.full((len(members),), float("inf")))
        self.horizons = members[0].horizons

    def member_outputs(self, x, streams: bool = False):
        xs = x.chunk(len(self.members)) if streams else [x] * len(self.members)
        return torch.stack([m(xk) for m, xk in zip(self.members, xs)])

    @torch.no_grad()
    def keep_best(self, errors: torch.Tensor) -> torch.Tensor:
        """errors[K]: each training member's validation error now; keep the members that beat their best ->
        the mean of the members' best errors (falls exactly when a member is kept: the checkpoint metric)."""
        for k in (errors < self.best).nonzero().flatten().tolist():
            self.keep(k)
            self.best[k] = errors[k]
        return self.best.mean()

    @torch.no_grad()
    def keep(self, k: int) -> None:
        """Member k's training weights become its kept (predicting) weights."""
        self.kept[k].load_state_dict(self.members[k].state_dict())

    def forward(self, x):
        kept = getattr(self, "kept", self.members)  # models pickled before members were kept
        return torch.stack([m(x) for m in kept]).mean(0)


# the spadon options, learning rate and history of the default before it was narrowed (bench ais --recipe wide)
WIDE = {"model": {"channels": 64, "hidden": 64, "layers": 2, "dropout": 0.1}, "lr": 2e-3, "history": 10}

MODELS = ("spadon", "transformer", "mamba", "rnn", "gru", "lstm")


def build_model(name: str, n_features: int, horizons: int, members: int = 1, **kw) -> nn.Module:
    """The model ``name`` (``MODELS``); ``members`` > 1: an :class:`Ensemble` of that many."""
    if members > 1:
        return Ensemble([build_model(name, n_features, horizons, **kw) for _ in range(members)])
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if name == "spadon":
        return Spadon(n_features, horizons, **kw)
    if name in ("rnn", "gru", "lstm"):
        return Recurrent(n_features, horizons, cell=name, **kw)
    if name in ("transformer", "mamba"):
        return ReportEncoder(n_features, horizons, mixer="attention" if name == "transformer" else "mamba", **kw)
    raise ValueError(f"unknown AIS model {name!r}; known: {', '.join(MODELS)}")


def model_class(name: str) -> type[nn.Module]:
    return {"spadon": Spadon, "transformer": ReportEncoder, "mamba": ReportEncoder}.get(name, Recurrent)

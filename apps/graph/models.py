"""Full-batch node classifiers: GCN, GraphSAGE, GAT, GIN on one graph. ``GNN(x[N, F], edge_index[2, E]) -> [N, C]``.

- ``gcn``: Kipf & Welling (ICLR 2017) on the project's cached sparse operator (:mod:`apps.graph.conv`);
  ``pyg_gcn`` is PyG's own ``GCNConv(cached=True)``, the speed reference.
- ``sage``: Hamilton et al. (NeurIPS 2017), mean aggregation (PyG ``SAGEConv``).
- ``gat``: Velickovic et al. (ICLR 2018), ``heads`` concatenated heads in hidden layers, one head out.
- ``gin``: Xu et al. (ICLR 2019); its MLP is ``core.ffn`` variant ``ffn`` (``mlp`` by default).
- ``ffn_sublayer``: after each hidden conv, ``h = h + FFN(LayerNorm(h))`` as in graph transformers, ``ffn`` variant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GINConv, SAGEConv
from torch_geometric.nn import GCNConv as PyGGCNConv

from apps.graph.conv import GCNConv, GraphCache, gcn_norm
from core.ffn import build_ffn, resolve_act
from core.sparse import SparseOperator

CONVS = ("gcn", "pyg_gcn", "sage", "gat", "gin")


class GNN(nn.Module):
    """``layers`` graph convolutions of one kind, ``x[N, F], edge_index[2, E] -> logits[N, C]``.

    Args:
        hidden: hidden width (per head for GAT).
        layers: graph convolutions.
        dropout: dropout before every convolution.
        act: activation between convolutions.
        heads: GAT attention heads in hidden layers.
        attn_dropout: GAT dropout on attention coefficients.
        ffn: the FFN variant of GIN's MLP and of the FFN sublayers (core.ffn).
        ffn_sublayer: add h + FFN(LayerNorm(h)) after each hidden convolution.
        ffn_kw: the FFN variant's own options (--model.ffn_kw.<option>).
        sparse_input: feed features through a sparse operator: auto (when under 10 % non-zero), true, false.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 16, layers: int = 2, conv: str = "gcn",
                 dropout: float = 0.5, act: str = "relu", heads: int = 8, attn_dropout: float = 0.6,
                 ffn: str = "mlp", ffn_sublayer: bool = False, ffn_kw: dict | None = None,
                 sparse_input: str | bool = "auto"):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"unknown conv {conv!r}; known: {', '.join(CONVS)}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.conv_name, self.dropout, self.sparse_input = conv, dropout, sparse_input
        self.act = resolve_act(act)()
        ffn_kw = dict(ffn_kw or {})
        dims = [in_channels] + [hidden * (heads if conv == "gat" else 1)] * (layers - 1) + [out_channels]
        self.convs = nn.ModuleList()
        for i in range(layers):
            d_in, d_out, last = dims[i], dims[i + 1], i == layers - 1
            if conv == "gcn":
                c = GCNConv(d_in, d_out)
            elif conv == "pyg_gcn":
                c = PyGGCNConv(d_in, d_out, cached=True)
            elif conv == "sage":
                c = SAGEConv(d_in, d_out, aggr="mean")
            elif conv == "gat":
                c = GATConv(d_in, d_out if last else hidden, heads=1 if last else heads, dropout=attn_dropout)
            else:  # gin: MLP(in -> hidden -> out) from core
                c = GINConv(build_ffn(ffn, d_in, hidden=hidden, out=d_out, act=act, **ffn_kw), train_eps=True)
            self.convs.append(c)
        self.ffns = nn.ModuleList()
        if ffn_sublayer:
            for d in dims[1:-1]:
                self.ffns.append(nn.Sequential(nn.LayerNorm(d), build_ffn(ffn, d, act=act, drop=dropout, **ffn_kw)))
        self._adj, self._x = GraphCache(), GraphCache()

    def reset_cache(self) -> None:
        """Forget the cached adjacency and feature operators (a new graph under the same tensors' identity)."""
        self._adj.clear()
        self._x.clear()

    def propagation(self, edge_index: torch.Tensor, num_nodes: int) -> SparseOperator:
        """The cached normalised adjacency (built once per graph)."""
        return self._adj.get(edge_index, lambda: gcn_norm(edge_index, num_nodes))

    def _sparse_features(self, x: torch.Tensor) -> SparseOperator | None:
        use = self.sparse_input
        if use == "auto":  # bag-of-words features (Cora 1.3 % nonzero) gain ~10x; dense ones lose
            use = bool(x.numel()) and int(torch.count_nonzero(x)) < 0.1 * x.numel()
        return SparseOperator.from_dense(x) if use else None

    def _input(self, x: torch.Tensor):
        op = self._x.get(x, lambda: self._sparse_features(x)) if self.conv_name == "gcn" else None
        if op is None:
            return F.dropout(x, self.dropout, self.training)
        return op.dropout(self.dropout, self.training)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, return_hidden: bool = False):
        graph = self.propagation(edge_index, x.size(0)) if self.conv_name == "gcn" else edge_index
        h, hidden = self._input(x), []
        for i, conv in enumerate(self.convs):
            h = conv(h, graph)
            hidden.append(h)
            if i < len(self.convs) - 1:
                h = self.act(h)
                if self.ffns:
                    h = h + self.ffns[i](h)
                h = F.dropout(h, self.dropout, self.training)
        return (h, hidden) if return_hidden else h


def build_model(in_channels: int, out_channels: int, name: str = "gcn", **kw) -> GNN:
    return GNN(in_channels, out_channels, conv=name, **kw)


DECODERS = ("dot", "mlp")


class LinkGNN(nn.Module):
    """Graph auto-encoder for link prediction (Kipf & Welling, "Variational Graph Auto-Encoders", 2016): a GNN
    encoder ``z = GNN(x, edge_index)`` [N, out] and a decoder scoring node pairs [2, P] -> logits [P]:
    ``dot`` z_i · z_j (GAE), or ``mlp`` FFN(z_i ⊙ z_j) -> 1 (the ``ffn`` variant, as in OGB's link baselines).

    Args:
        hidden: hidden width of the encoder (per head for GAT).
        out: node embedding width.
        layers: graph convolutions.
        decoder: dot (inner product) or mlp (an FFN over the Hadamard product).
        dropout: dropout before every convolution.
        act: activation between convolutions (and inside the decoder's FFN).
        heads: GAT attention heads in hidden layers.
        attn_dropout: GAT dropout on attention coefficients.
        ffn: the FFN variant of the mlp decoder, GIN's MLP and the FFN sublayers (core.ffn).
        ffn_sublayer: add h + FFN(LayerNorm(h)) after each hidden convolution.
        ffn_kw: the FFN variant's own options (--model.ffn_kw.<option>).
        sparse_input: feed features through a sparse operator: auto (when under 10 % non-zero), true, false.
    """

    def __init__(self, in_channels: int, hidden: int = 128, out: int = 64, layers: int = 2, conv: str = "gcn",
                 decoder: str = "dot", dropout: float = 0.0, act: str = "relu", heads: int = 8,
                 attn_dropout: float = 0.6, ffn: str = "mlp", ffn_sublayer: bool = False, ffn_kw: dict | None = None,
                 sparse_input: str | bool = "auto"):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; known: {', '.join(DECODERS)}")
        self.encoder = GNN(in_channels, out, hidden=hidden, layers=layers, conv=conv, dropout=dropout, act=act,
                           heads=heads, attn_dropout=attn_dropout, ffn=ffn, ffn_sublayer=ffn_sublayer,
                           ffn_kw=ffn_kw, sparse_input=sparse_input)
        self.decoder = build_ffn(ffn, out, hidden=hidden, out=1, act=act, **dict(ffn_kw or {})) \
            if decoder == "mlp" else None

    def encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, edge_index)

    def decode(self, z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            return (z[pairs[0]] * z[pairs[1]]).sum(-1)
        return self.decoder(z[pairs[0]] * z[pairs[1]]).squeeze(-1)

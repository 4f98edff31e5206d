"""Link-prediction protocol: a leakage-free edge split with 1:1 negatives; Hits@K as OGB defines it, MRR and AUC
over the split's shared negatives."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EdgeSplit:
    """Undirected edges as [2, E] (i < j). ``train_graph`` holds only training edges, both directions."""

    num_nodes: int
    train_pos: torch.Tensor
    train_neg: torch.Tensor
    val_pos: torch.Tensor
    val_neg: torch.Tensor
    test_pos: torch.Tensor
    test_neg: torch.Tensor

    @property
    def train_graph(self) -> torch.Tensor:
        return torch.cat([self.train_pos, self.train_pos.flip(0)], 1)


def undirected(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Distinct undirected edges (i < j), self-loops dropped, as [2, E]."""
    a, b = edge_index
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    keep = lo != hi
    key = torch.unique(lo[keep] * n + hi[keep])
    return torch.stack([key // n, key % n])


def sample_negatives(num_nodes: int, forbidden: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` distinct node pairs (i < j) that are not edges of ``forbidden`` (undirected [2, E])."""
    taken = set((forbidden[0] * num_nodes + forbidden[1]).tolist())
    out: list[int] = []
    while len(out) < count:
        a = torch.randint(0, num_nodes, (2 * count,), generator=gen)
        b = torch.randint(0, num_nodes, (2 * count,), generator=gen)
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        for k in (lo * num_nodes + hi)[lo != hi].tolist():
            if k not in taken:
                taken.add(k)
                out.append(k)
                if len(out) == count:
                    break
    key = torch.tensor(out)
    return torch.stack([key // num_nodes, key % num_nodes])


def split_edges(edge_index: torch.Tensor, num_nodes: int, val: float = 0.1, test: float = 0.2,
                seed: int = 0) -> EdgeSplit:
    """70/10/20 of the undirected edges (NetInfoF's protocol), one negative per positive in every part;
    negatives never coincide with any true edge."""
    gen = torch.Generator().manual_seed(seed)
    und = undirected(edge_index, num_nodes)
    perm = torch.randperm(und.size(1), generator=gen)
    n_val, n_test = int(val * und.size(1)), int(test * und.size(1))
    te, va, tr = und[:, perm[:n_test]], und[:, perm[n_test:n_test + n_val]], und[:, perm[n_test + n_val:]]
    neg = sample_negatives(num_nodes, und, tr.size(1) + va.size(1) + te.size(1), gen)
    a, b = tr.size(1), tr.size(1) + va.size(1)
    return EdgeSplit(num_nodes, tr, neg[:, :a], va, neg[:, a:b], te, neg[:, b:])


def hits_at_k(pos_scores: torch.Tensor, neg_scores: torch.Tensor, k: int = 100) -> float:
    """OGB's Hits@K: share of positive edges scored above the K-th best negative edge."""
    if neg_scores.numel() < k:
        return 1.0
    kth = torch.topk(neg_scores, k).values[-1]
    return float((pos_scores > kth).float().mean())


def mrr(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> float:
    """Mean reciprocal rank of each positive among all the split's negatives (rank 1 + negatives scored at least as
    high; ties count against the positive), the shared-negative MRR of the HeaRT benchmark (Li et al. 2023)."""
    neg = torch.sort(neg_scores).values
    above = neg.numel() - torch.searchsorted(neg, pos_scores, right=False)  # negatives >= each positive
    return float((1.0 / (1.0 + above.float())).mean())


def auc(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> float:
    """ROC AUC = P(positive scored above negative), ties half (the Mann-Whitney U statistic)."""
    neg = torch.sort(neg_scores).values
    below = torch.searchsorted(neg, pos_scores, right=False).float()
    ties = torch.searchsorted(neg, pos_scores, right=True).float() - below
    return float((below + 0.5 * ties).sum() / (pos_scores.numel() * neg_scores.numel()))


def link_metrics(pos_scores: torch.Tensor, neg_scores: torch.Tensor, prefix: str, ks=(20, 50, 100)) -> dict:
    """``{prefix}hits_at_K`` for each K (MLflow refuses "@" in a metric name), ``{prefix}mrr``, ``{prefix}auc``."""
    out = {f"{prefix}hits_at_{k}": hits_at_k(pos_scores, neg_scores, k) for k in ks}
    return {**out, f"{prefix}mrr": mrr(pos_scores, neg_scores), f"{prefix}auc": auc(pos_scores, neg_scores)}


def node_accuracy(scores: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of the ``mask`` nodes whose predicted class is ``y``; ``scores`` are class scores [N, C] or classes [N].
    The one node-classification accuracy of the app (backprop, ForwardGNN, retrain scoring)."""
    pred = scores.argmax(-1) if scores.dim() == 2 else scores
    return (pred[mask] == y[mask]).float().mean()

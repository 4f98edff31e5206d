"""NetInfoF (Lee et al., "NetInfoF Framework: Measuring and Exploiting Network Usable Information", ICLR 2024),
for link prediction. Everything is fit on the training graph (training edges only).

Embeddings, each [N, d] with standardised columns (``node_embeddings``):
  ``U``   adjacency SVD, U sqrt(S) of the training adjacency A;
  ``R``   SVD of personalised PageRank, Π = α (I - (1-α) Ā)^-1 with Ā = D^-1/2 A D^-1/2 (random walks with restart),
          found by a randomised SVD whose products with Π are a truncated power series of sparse products;
  ``F``   PCA of the node features X;
  ``Psl`` PCA of Â² X with Â = D^-1/2 (A + I) D^-1/2 (propagation with self-loops);
  ``Pns`` PCA of Ā² X with Ā = D^-1/2 A D^-1/2 (without self-loops, the heterophily-friendly view).
Compatibility adjustment: a similarity ``s(i, j) = z_i^T H z_j`` whose H best reconstructs the training adjacency,
min_H ||Z H Z^T - A||² + λ||H||², solved in closed form: H = (Z^T Z + λI)^-1 Z^T A Z (Z^T Z + λI)^-1.
NetInfoF_Probe: the similarities of held-out node pairs are binned (quantile bins fit on training pairs) and the
usable information is ``score = 2^{-H(Y | bin)}`` (Y: edge or not), a lower bound on the accuracy any predictor
of Y from that embedding can reach; the graph's score is the best embedding's.
NetInfoF_Act: logistic regression on the concatenated adjusted features ``z_i ⊙ (H z_j)`` of all embeddings, its
two regularisers (the ridge λ of H and the weight decay of the regression) chosen on the validation pairs by
:func:`select_regularisers`. ``python -m pipelines.graph --task link --model netinfof`` trains it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apps.graph.conv import gcn_norm
from apps.graph.metrics import EdgeSplit, hits_at_k


def _standardise(z: torch.Tensor) -> torch.Tensor:
    z = z - z.mean(0)
    return z / z.std(0).clamp(min=1e-8)


def _pca(m: torch.Tensor, d: int) -> torch.Tensor:
    d = min(d, min(m.shape) - 1)
    u, s, _ = torch.pca_lowrank(m, q=d, center=True, niter=4)
    return u * s


def personalised_pagerank(split: EdgeSplit, d: int, alpha: float = 0.15, terms: int = 40, seed: int = 0):
    """R: the rank-``d`` factor U sqrt(S) of Π = α Σ_k ((1-α) Ā)^k on the training graph ([N, d]).

    Π is symmetric, so a randomised SVD (Halko et al. 2011: a range from Π Ω with one power step, then the SVD of
    Q^T Π) needs only products Π M, each ``terms`` sparse products (the series' tail is (1-α)^terms, 0.15 % at the
    defaults); memory O(N d), never the dense N x N matrix."""
    n = split.num_nodes
    a = gcn_norm(split.train_graph, n, self_loops=False)

    def ppr(m: torch.Tensor) -> torch.Tensor:
        out, term = alpha * m, m
        for _ in range(terms):
            term = (1 - alpha) * (a @ term)
            out = out + alpha * term
        return out

    q = min(d + 10, n)
    omega = torch.randn(n, q, generator=torch.Generator().manual_seed(seed))
    basis, _ = torch.linalg.qr(ppr(ppr(omega)))
    ub, s, _ = torch.linalg.svd(ppr(basis).t(), full_matrices=False)
    d = min(d, q)
    return (basis @ ub)[:, :d] * s[:d].sqrt()


VIEWS = ("U", "R", "F", "Psl", "Pns")


def node_embeddings(x: torch.Tensor, split: EdgeSplit, d: int = 64, seed: int = 0, alpha: float = 0.15,
                    views: tuple[str, ...] = VIEWS) -> dict[str, torch.Tensor]:
    """NetInfoF's views of the training graph (all five by default: U, R, F, Psl, Pns), each [N, d], columns
    standardised. The adjacency stays sparse (its SVD is randomised), so memory is O(E + N d)."""
    unknown = sorted(set(views) - set(VIEWS))
    if unknown or not views:
        raise ValueError(f"views: unknown {unknown} (known: {', '.join(VIEWS)})" if unknown else "views: none given")
    torch.manual_seed(seed)
    n, g = split.num_nodes, split.train_graph
    with_loops, without = gcn_norm(g, n, self_loops=True), gcn_norm(g, n, self_loops=False)

    def adjacency_svd():
        a = torch.sparse_coo_tensor(g, torch.ones(g.size(1)), (n, n)).coalesce()
        u, s, _ = torch.svd_lowrank(a, q=min(d, n - 1), niter=4)
        return u * s.sqrt()

    make = {"U": adjacency_svd, "R": lambda: personalised_pagerank(split, d, alpha, seed=seed),
            "F": lambda: _pca(x, d), "Psl": lambda: _pca(with_loops @ (with_loops @ x), d),
            "Pns": lambda: _pca(without @ (without @ x), d)}
    return {v: _standardise(make[v]()) for v in VIEWS if v in views}


def compatibility(z: torch.Tensor, split: EdgeSplit, lam: float = 1.0) -> torch.Tensor:
    """Closed-form H [d, d] with Z H Z^T ≈ A_train (ridge ``lam``)."""
    g = split.train_graph
    az = torch.zeros_like(z).index_add_(0, g[0], z[g[1]])  # A Z
    inv = torch.linalg.inv(z.t() @ z + lam * torch.eye(z.size(1)))
    return inv @ (z.t() @ az) @ inv


def similarity(z: torch.Tensor, h: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    return ((z[pairs[0]] @ h) * z[pairs[1]]).sum(-1)


def usable_information(train_s: tuple[torch.Tensor, torch.Tensor], eval_s: tuple[torch.Tensor, torch.Tensor],
                       bins: int = 32) -> float:
    """NetInfoF_Score = 2^{-H(Y|B)}: B = quantile bin (edges from the training pairs) of the similarity."""
    edges = torch.quantile(torch.cat(train_s), torch.linspace(0, 1, bins + 1)[1:-1])
    pos_b, neg_b = torch.bucketize(eval_s[0], edges), torch.bucketize(eval_s[1], edges)
    n_pos, n_neg = torch.bincount(pos_b, minlength=bins).float(), torch.bincount(neg_b, minlength=bins).float()
    tot = n_pos + n_neg
    h = 0.0
    for p, q, t in zip(n_pos.tolist(), n_neg.tolist(), tot.tolist()):
        if t == 0:
            continue
        for c in (p, q):
            if c:
                h -= (t / float(tot.sum())) * (c / t) * math.log2(c / t)
    return 2.0 ** (-h)


@dataclass
class ProbeResult:
    scores: dict[str, float]  # NetInfoF_Score per embedding

    @property
    def score(self) -> float:
        return max(self.scores.values())


def probe(emb: dict[str, torch.Tensor], split: EdgeSplit, bins: int = 32, lam: float = 1.0,
          hs: dict[str, torch.Tensor] | None = None):
    """NetInfoF_Probe on the validation pairs (``hs``: the views' compatibility matrices at ``lam`` if already
    computed). -> (ProbeResult, {name: H})."""
    hs, scores = dict(hs or {}), {}
    for name, z in emb.items():
        h = hs[name] = hs[name] if name in hs else compatibility(z, split, lam)
        tr = (similarity(z, h, split.train_pos), similarity(z, h, split.train_neg))
        va = (similarity(z, h, split.val_pos), similarity(z, h, split.val_neg))
        scores[name] = usable_information(tr, va, bins)
    return ProbeResult(scores), hs


class NetInfoF(torch.nn.Module):
    """NetInfoF_Act: logistic regression over ``[z_i ⊙ (H z_j)]`` of every embedding, the link model of the link
    task (``encode`` has nothing to compute: the views are fixed buffers). ``decode(None, pairs[2, P]) -> [P]``.

    Args:
        emb: name -> [N, d] view (:func:`node_embeddings`).
        hs: name -> [d, d] compatibility matrix (:func:`compatibility`).
    """

    def __init__(self, emb: dict[str, torch.Tensor], hs: dict[str, torch.Tensor]):
        super().__init__()
        self.names = sorted(emb)
        self.dims = [emb[k].size(1) for k in self.names]
        self.register_buffer("z", torch.cat([emb[k] for k in self.names], 1))
        self.register_buffer("zh", torch.empty_like(self.z))
        self.set_compatibility(hs)
        self.lin = torch.nn.Linear(self.z.size(1), 1)

    def views(self) -> dict[str, torch.Tensor]:
        """name -> its [N, d] embedding."""
        return dict(zip(self.names, self.z.split(self.dims, 1)))

    def set_compatibility(self, hs: dict[str, torch.Tensor]) -> None:
        """Use these compatibility matrices (name -> H [d, d]) from now on."""
        self.hs = dict(hs)
        views = self.views()
        self.zh.copy_(torch.cat([views[k] @ hs[k] for k in self.names], 1))

    def features(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.zh[pairs[0]] * self.z[pairs[1]]

    def encode(self, x=None, edge_index=None) -> None:
        return None

    def decode(self, state, pairs: torch.Tensor) -> torch.Tensor:
        return self.lin(self.features(pairs)).squeeze(-1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.decode(None, pairs)


def _logistic_fit(feats: torch.Tensor, y: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor], weight_decay: float,
                  epochs: int, lr: float, k: int, seed: int) -> float:
    """Best validation Hits@k over ``epochs`` full-batch Adam steps of a logistic regression on fixed features."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(feats.size(1), 1)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
    best = 0.0
    for _ in range(epochs):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(lin(feats).squeeze(-1), y).backward()
        opt.step()
        with torch.no_grad():
            best = max(best, hits_at_k(lin(val[0]).squeeze(-1), lin(val[1]).squeeze(-1), k))
    return best


def select_regularisers(emb: dict[str, torch.Tensor], split: EdgeSplit, lams=(1.0, 1e3, 1e4),
                        weight_decays=(0.0, 1e-4, 1e-3), epochs: int = 300, lr: float = 0.01, k: int = 100,
                        seed: int = 0) -> tuple[float, float, dict]:
    """NetInfoF's per-split tuning: the (ridge λ of H, weight decay of Act) pair whose regression reaches the best
    validation Hits@k (training pairs: the split's training edges and negatives; never the test pairs).
    -> (λ, weight decay, {"lam=..,wd=..": val Hits@k})."""
    pairs = torch.cat([split.train_pos, split.train_neg], 1)
    y = torch.cat([torch.ones(split.train_pos.size(1)), torch.zeros(split.train_neg.size(1))])
    grid = {}
    for lam in lams:
        act = NetInfoF(emb, {n: compatibility(z, split, lam) for n, z in emb.items()})
        feats, val = act.features(pairs), (act.features(split.val_pos), act.features(split.val_neg))
        for wd in weight_decays:
            grid[(lam, wd)] = _logistic_fit(feats, y, val, wd, epochs, lr, k, seed)
    lam, wd = max(grid, key=lambda key: (grid[key], -key[1], key[0]))  # ties: less decay, more ridge
    return lam, wd, {f"lam={a:g},wd={b:g}": v for (a, b), v in grid.items()}


def netinfof_views(x, split: EdgeSplit, dim: int = 128, alpha: float = 0.15, views: list[str] | None = None,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """NetInfoF's views of the training graph (:func:`node_embeddings`), as the link job's options name them.

    Args:
        dim: width of each view.
        alpha: restart probability of the personalised PageRank view R.
        views: which views Act combines (default all five, as the paper: U, R, F, Psl, Pns).
    """
    return node_embeddings(x, split, d=dim, seed=seed, alpha=alpha, views=tuple(views or VIEWS))

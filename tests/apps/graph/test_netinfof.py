"""Link-prediction protocol and NetInfoF's pieces against hand or brute-force references."""
import math

import torch

from apps.graph.metrics import EdgeSplit, hits_at_k, split_edges
from apps.graph.netinfof import compatibility, usable_information


def test_split_is_70_10_20_disjoint_with_true_negatives():
    g = torch.Generator().manual_seed(0)
    e = torch.randint(0, 200, (2, 1500), generator=g)
    sp = split_edges(torch.cat([e, e.flip(0)], 1), 200, seed=1)
    und = {tuple(sorted(p)) for p in e.t().tolist() if p[0] != p[1]}
    parts = [sp.train_pos, sp.val_pos, sp.test_pos]
    sizes = [p.size(1) for p in parts]
    assert sum(sizes) == len(und) and abs(sizes[1] - 0.1 * len(und)) <= 1 and abs(sizes[2] - 0.2 * len(und)) <= 1
    sets = [{tuple(p) for p in x.t().tolist()} for x in parts]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    for pos, neg in ((sp.train_pos, sp.train_neg), (sp.val_pos, sp.val_neg), (sp.test_pos, sp.test_neg)):
        assert neg.size(1) == pos.size(1)
        assert not ({tuple(p) for p in neg.t().tolist()} & und)
    # the training graph holds only training edges
    assert {tuple(sorted(p)) for p in sp.train_graph.t().tolist()} == sets[0]


def test_hits_at_k_as_ogb():
    neg = torch.arange(200, dtype=torch.float)  # 100th best negative = 100
    pos = torch.tensor([100.0, 100.5, 150.0, 10.0])
    assert hits_at_k(pos, neg, 100) == 0.5


def test_compatibility_is_the_least_squares_solution():
    torch.manual_seed(0)
    n, d = 30, 4
    z = torch.randn(n, d, dtype=torch.float64)
    e = torch.randint(0, n, (2, 60))
    e = e[:, e[0] < e[1]]
    e = torch.unique(e, dim=1)  # distinct undirected edges
    sp = EdgeSplit(n, e, e, e, e, e, e)
    a = torch.zeros(n, n, dtype=torch.float64)
    a[sp.train_graph[0], sp.train_graph[1]] = 1.0
    h = compatibility(z, sp, lam=1e-9)
    # brute force: vec(Z H Z^T) = (Z kron Z) vec(H)
    k = torch.kron(z, z)
    ref = torch.linalg.lstsq(k, a.reshape(-1, 1)).solution.reshape(d, d)
    torch.testing.assert_close(h, ref, rtol=1e-6, atol=1e-8)


def test_usable_information_bounds():
    torch.manual_seed(0)
    sep = (torch.rand(500) + 2, torch.rand(500))  # separable similarities
    assert usable_information(sep, sep) == 1.0
    noise = (torch.randn(4000), torch.randn(4000))
    score = usable_information(noise, (torch.randn(4000), torch.randn(4000)), bins=8)
    assert abs(score - 0.5) < 0.03 and math.isfinite(score)

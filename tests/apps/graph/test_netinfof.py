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


def _toy_split(n=40, f=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randint(0, n, (2, 160), generator=g)
    sp = split_edges(torch.cat([e, e.flip(0)], 1), n, seed=seed)
    return torch.randn(n, f, generator=g), sp


def _residual(target: torch.Tensor, basis: torch.Tensor) -> float:
    """Relative least-squares residual of target's columns on [1, basis] (0: inside the span)."""
    b = torch.cat([torch.ones(basis.size(0), 1), basis], 1).double()
    sol = torch.linalg.lstsq(b, target.double()).solution
    return float((b @ sol - target.double()).norm() / target.double().norm())


def _dense(op) -> torch.Tensor:
    return op @ torch.eye(op.shape[1])


def test_embeddings_are_the_views_the_paper_defines_on_the_training_graph_only():
    """F spans PCA directions of X; Psl of Â²X with self-loops; Pns of Ā²X without (and not of the other one);
    standardised columns; test edges never reach them."""
    from apps.graph.conv import gcn_norm
    from apps.graph.netinfof import node_embeddings

    x, sp = _toy_split()
    emb = node_embeddings(x, sp, d=4)
    assert {k: tuple(v.shape) for k, v in emb.items()} == {k: (40, 4) for k in ("U", "R", "F", "Psl", "Pns")}
    for z in emb.values():
        torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(z.std(0), torch.ones(4), atol=1e-4, rtol=0)
    a_sl, a_ns = (_dense(gcn_norm(sp.train_graph, 40, self_loops=s)) for s in (True, False))
    assert _residual(emb["F"], x) < 1e-5
    assert _residual(emb["Psl"], a_sl @ a_sl @ x) < 1e-5 and _residual(emb["Psl"], a_ns @ a_ns @ x) > 0.05
    assert _residual(emb["Pns"], a_ns @ a_ns @ x) < 1e-5 and _residual(emb["Pns"], a_sl @ a_sl @ x) > 0.05
    moved = EdgeSplit(sp.num_nodes, sp.train_pos, sp.train_neg, sp.val_pos, sp.val_neg, sp.test_neg, sp.test_pos)
    again = node_embeddings(x, moved, d=4)
    assert all(torch.equal(emb[k], again[k]) for k in emb)


def test_act_with_unit_weights_is_the_sum_of_the_compatibility_similarities():
    """NetInfoF_Act's features are z_i ⊙ (H z_j) per embedding, so unit weights give Σ_views z_i^T H z_j."""
    from apps.graph.netinfof import NetInfoF, compatibility, node_embeddings, similarity

    x, sp = _toy_split(seed=1)
    emb = node_embeddings(x, sp, d=4)
    hs = {k: compatibility(z, sp) for k, z in emb.items()}
    act = NetInfoF(emb, hs)
    with torch.no_grad():
        act.lin.weight.fill_(1.0)
        act.lin.bias.zero_()
        pairs = torch.cat([sp.test_pos, sp.test_neg], 1)
        torch.testing.assert_close(act(pairs), sum(similarity(emb[k], hs[k], pairs) for k in emb),
                                   rtol=1e-4, atol=1e-4)


def test_views_round_trip_and_a_new_compatibility_replaces_the_old():
    from apps.graph.netinfof import NetInfoF, compatibility, node_embeddings, similarity

    x, sp = _toy_split(seed=3)
    emb = node_embeddings(x, sp, d=4)
    act = NetInfoF(emb, {k: compatibility(z, sp, 1.0) for k, z in emb.items()})
    assert all(torch.equal(act.views()[k], emb[k]) for k in emb)
    hs = {k: compatibility(z, sp, 50.0) for k, z in emb.items()}
    act.set_compatibility(hs)
    with torch.no_grad():
        act.lin.weight.fill_(1.0)
        act.lin.bias.zero_()
        torch.testing.assert_close(act(sp.val_pos), sum(similarity(emb[k], hs[k], sp.val_pos) for k in emb),
                                   rtol=1e-4, atol=1e-4)


def test_personalised_pagerank_view_factors_the_dense_ppr_matrix():
    """R R^T = Π = α (I - (1-α) Ā)^-1 when the rank is full (the series run long enough to be exact)."""
    from apps.graph.conv import gcn_norm
    from apps.graph.netinfof import personalised_pagerank

    _, sp = _toy_split(n=30, seed=4)
    a = _dense(gcn_norm(sp.train_graph, 30, self_loops=False)).double()
    pi = 0.15 * torch.linalg.inv(torch.eye(30, dtype=torch.float64) - 0.85 * a)
    r = personalised_pagerank(sp, d=30, alpha=0.15, terms=300).double()
    torch.testing.assert_close(r @ r.t(), pi, rtol=0, atol=1e-4)
    low = personalised_pagerank(sp, d=5, alpha=0.15, terms=300).double()  # near the best rank-5 approximation
    ev = torch.linalg.eigvalsh(pi).flip(0)
    assert float(torch.linalg.matrix_norm(pi - low @ low.t(), 2)) < 1.05 * float(ev[5])  # randomised SVD


def test_regulariser_selection_never_reads_the_test_pairs():
    """Test pairs that point outside the graph would fail any read; selection runs on train and val only."""
    from apps.graph.netinfof import node_embeddings, select_regularisers

    x, sp = _toy_split(seed=5)
    bad = torch.full_like(sp.test_pos, 10_000)
    sealed = EdgeSplit(sp.num_nodes, sp.train_pos, sp.train_neg, sp.val_pos, sp.val_neg, bad, bad)
    lam, wd, grid = select_regularisers(node_embeddings(x, sp, d=4), sealed, lams=(1.0, 100.0),
                                        weight_decays=(0.0, 1e-3), epochs=20, k=5)
    assert len(grid) == 4 and grid[f"lam={lam:g},wd={wd:g}"] == max(grid.values())


def test_a_subset_of_views_computes_only_those_and_an_unknown_view_is_an_error():
    import pytest

    from apps.graph.netinfof import node_embeddings

    x, sp = _toy_split(seed=6)
    full, some = node_embeddings(x, sp, d=4), node_embeddings(x, sp, d=4, views=("F", "U"))
    assert list(some) == ["U", "F"] and all(torch.equal(some[k], full[k]) for k in some)
    with pytest.raises(ValueError, match=r"views: unknown \['Q'\]"):
        node_embeddings(x, sp, d=4, views=("U", "Q"))

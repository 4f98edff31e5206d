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
    assert {k: tuple(v.shape) for k, v in emb.items()} == {k: (40, 4) for k in ("U", "F", "Psl", "Pns")}
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
    from apps.graph.netinfof import NetInfoFAct, compatibility, node_embeddings, similarity

    x, sp = _toy_split(seed=1)
    emb = node_embeddings(x, sp, d=4)
    hs = {k: compatibility(z, sp) for k, z in emb.items()}
    act = NetInfoFAct(emb, hs)
    with torch.no_grad():
        act.lin.weight.fill_(1.0)
        act.lin.bias.zero_()
        pairs = torch.cat([sp.test_pos, sp.test_neg], 1)
        torch.testing.assert_close(act(pairs), sum(similarity(emb[k], hs[k], pairs) for k in emb),
                                   rtol=1e-4, atol=1e-4)


def test_holdout_supervision_splits_the_training_edges_into_disjoint_message_and_supervision_sets():
    from apps.graph.netinfof import holdout_supervision

    _, sp = _toy_split(seed=2)
    msg, sup = holdout_supervision(sp, fraction=0.25, seed=0)
    as_set = lambda t: {tuple(p) for p in t.t().tolist()}  # noqa: E731
    assert as_set(msg.train_pos) | as_set(sup.train_pos) == as_set(sp.train_pos)
    assert not as_set(msg.train_pos) & as_set(sup.train_pos)
    assert sup.train_pos.size(1) == int(0.25 * sp.train_pos.size(1)) == sup.train_neg.size(1)
    assert torch.equal(msg.test_pos, sp.test_pos) and torch.equal(sup.val_neg, sp.val_neg)


def test_link_prediction_embeds_message_edges_and_fits_h_and_act_on_the_held_out_supervision_edges(monkeypatch):
    """The leak the held-out protocol removes: H and Act fitted on the very edges that built the embeddings."""
    from apps.graph import netinfof

    x, sp = _toy_split(seed=2)
    seen = {"emb": [], "h": [], "act": []}
    for name, key in (("node_embeddings", "emb"), ("compatibility", "h"), ("fit_act", "act")):
        real = getattr(netinfof, name)
        monkeypatch.setattr(netinfof, name, lambda a, split, *r, _real=real, _key=key, **kw:
                            seen[_key].append(split) or _real(a, split, *r, **kw))
    out = netinfof.link_prediction(x, sp, d=4, seed=0, holdout=0.25)
    msg, sup = netinfof.holdout_supervision(sp, 0.25, seed=0)
    (emb_split,), (act_split,) = seen["emb"], seen["act"]
    assert torch.equal(emb_split.train_pos, msg.train_pos)
    assert all(torch.equal(s.train_pos, sup.train_pos) for s in seen["h"] + [act_split]) and len(seen["h"]) == 4
    assert 0.5 <= out["probe"].score <= 1 and 0 <= out["val_acc"] <= 1 and 0 <= out["test_hits"] <= 1

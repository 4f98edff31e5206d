"""The link task's pieces: ranking metrics against brute force, the edge-split data module and its errors, the
GNN auto-encoder's decoders."""
import pytest
import torch

from apps.graph.metrics import auc, link_metrics, mrr
from core.datadir import DataError


def test_mrr_and_auc_match_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randint(0, 20, (50,), generator=g).float(), torch.randint(0, 20, (80,), generator=g).float()
    ranks = torch.tensor([1 + int((neg >= p).sum()) for p in pos], dtype=torch.float)
    assert mrr(pos, neg) == pytest.approx(float((1 / ranks).mean()))
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos.tolist() for n in neg.tolist()]
    assert auc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))
    out = link_metrics(pos, neg, "test_", ks=(10,))
    assert set(out) == {"test_hits_at_10", "test_mrr", "test_auc"}


def _fake_graph(monkeypatch, n=60, edges=200, features=True, seed=0):
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    e = torch.randint(0, n, (2, edges), generator=g)
    data = Data(x=torch.rand(n, 5, generator=g) if features else None, edge_index=torch.cat([e, e.flip(0)], 1),
                num_nodes=n)
    monkeypatch.setattr("apps.graph.data.load", lambda name, root=None, **kw: (None, data))
    return data


def test_message_passing_sees_training_edges_only(monkeypatch):
    from apps.graph.data import LinkData

    _fake_graph(monkeypatch)
    dm = LinkData("Fake", seed=3)
    dm.setup()
    d, sp = dm.data, dm.split
    seen = {tuple(sorted(p)) for p in d.edge_index.t().tolist()}
    assert seen == {tuple(p) for p in sp.train_pos.t().tolist()}
    held = {tuple(p) for p in torch.cat([sp.val_pos, sp.test_pos], 1).t().tolist()}
    assert not seen & held and dm.features_used == "given"
    again = LinkData("Fake", seed=3)
    again.setup()
    assert torch.equal(again.split.test_pos, sp.test_pos)  # the seed fixes the split


def test_a_graph_without_features_gets_identity_or_degree_features_from_training_edges(monkeypatch, caplog):
    from apps.graph.data import LinkData

    _fake_graph(monkeypatch, features=False)
    dm = LinkData("Fake")
    dm.setup()
    assert dm.features_used == "identity" and torch.equal(dm.data.x, torch.eye(60))
    assert "Fake has no node features; using identity features (60 columns)" in caplog.text
    deg = LinkData("Fake", features="degree")
    deg.setup()
    train_degree = torch.bincount(deg.data.edge_index[0], minlength=60)
    assert torch.equal(deg.data.x.argmax(1), train_degree.clamp(max=63))
    with pytest.raises(DataError, match="has no node features; use --data.features identity or degree"):
        LinkData("Fake", features="given").setup()


@pytest.mark.parametrize("edges,kw,msg", [
    (0, {}, "the graph has no edges"),
    (20, {"test": 0.01}, r"test=0.01 of \d+ edges leaves no test edges; raise data.test"),
    (20, {"val": 0.5, "test": 0.55}, "leave no training edges"),
])
def test_bad_graphs_and_splits_are_clear_errors(monkeypatch, edges, kw, msg):
    from apps.graph.data import LinkData

    _fake_graph(monkeypatch, n=40, edges=edges, seed=1)
    with pytest.raises(DataError, match=msg):
        LinkData("Fake", **kw).setup()


def test_decoders_dot_and_mlp():
    from apps.graph.models import LinkGNN

    torch.manual_seed(0)
    x, ei = torch.randn(10, 4), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    pairs = torch.tensor([[0, 5, 9], [1, 6, 2]])
    dot = LinkGNN(4, hidden=8, out=6)
    z = dot.encode(x, ei)
    torch.testing.assert_close(dot.decode(z, pairs), (z[pairs[0]] * z[pairs[1]]).sum(-1))
    mlp = LinkGNN(4, hidden=8, out=6, decoder="mlp", ffn="swiglu")
    z = mlp.encode(x, ei)
    torch.testing.assert_close(mlp.decode(z, pairs), mlp.decoder(z[pairs[0]] * z[pairs[1]]).squeeze(-1))
    assert type(mlp.decoder).__name__.lower().startswith("swiglu")

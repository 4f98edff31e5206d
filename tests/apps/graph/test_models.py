"""GNN layers and methods: our GCN equals PyG's, every conv runs, Virgo flattens the variance, SF's graph."""
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv as PyGGCNConv

from apps.graph.conv import GCNConv, GraphCache, gcn_norm
from apps.graph.data import GraphData
from apps.graph.forward import SingleForwardGNN
from apps.graph.init import initialize, propagation_ratios, variance_profile
from apps.graph.models import CONVS, GNN


@pytest.fixture(scope="module")
def cora(cache_root):
    dm = GraphData("Cora")
    dm.setup()
    return dm


def test_gcn_conv_equals_pyg_forward_and_backward(cora):
    d = cora.data
    ours, ref = GCNConv(d.x.size(1), 16), PyGGCNConv(d.x.size(1), 16)
    with torch.no_grad():
        ref.lin.weight.copy_(ours.weight)  # both [out, in]
        ours.bias.normal_()
        ref.bias.copy_(ours.bias)
    x1, x2 = d.x.clone().requires_grad_(), d.x.clone().requires_grad_()
    y1, y2 = ours(x1, gcn_norm(d.edge_index, d.num_nodes)), ref(x2, d.edge_index)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-6)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.weight.grad, ref.lin.weight.grad, rtol=1e-4, atol=1e-5)


def test_sparse_features_path_equals_dense_path(cora):
    d = cora.data
    torch.manual_seed(0)
    a = GNN(d.x.size(1), 7, sparse_input=True).eval()
    b = GNN(d.x.size(1), 7, sparse_input=False).eval()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(d.x, d.edge_index), b(d.x, d.edge_index), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("conv", CONVS)
def test_every_conv_trains_full_batch(cora, conv):
    d = cora.data
    torch.manual_seed(0)
    m = GNN(d.x.size(1), 7, hidden=8, conv=conv, heads=2, dropout=0.0, attn_dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(m(d.x, d.edge_index)[d.train_mask], d.y[d.train_mask])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_gin_mlp_and_ffn_sublayer_come_from_core(cora):
    from core.ffn.glu import GLU

    m = GNN(cora.num_features, 7, hidden=16, layers=3, conv="gin", ffn="swiglu", ffn_sublayer=True)
    assert isinstance(m.convs[0].nn, GLU) and len(m.ffns) == 2 and isinstance(m.ffns[0][1], GLU)
    assert m(cora.data.x, cora.data.edge_index).shape == (2708, 7)


def test_virgo_ratios_and_flatter_variance_at_depth(cora):
    d = cora.data
    adj = gcn_norm(d.edge_index, d.num_nodes)
    cf, cb = propagation_ratios(adj, d.x, d.train_mask, 3)
    assert all(0 < c < 1 for c in cf + cb)  # averaging over neighbours shrinks the signal
    spread = {}
    for scheme in ("xavier", "virgo"):
        torch.manual_seed(0)
        m = GNN(d.x.size(1), 7, hidden=64, layers=8)
        stds = initialize(m, scheme, d.x, d.edge_index, d.train_mask)
        assert abs(float(m.convs[3].weight.std()) - stds[3]) < 0.1 * stds[3]
        fwd = variance_profile(m, d.x, d.edge_index, d.y, d.train_mask)["forward"]
        spread[scheme] = max(fwd) / min(fwd)
    assert spread["virgo"] < 5 < 20 < spread["xavier"]


def test_sf_virtual_nodes_join_training_nodes_of_their_class_only(cora):
    d = cora.data
    sf = SingleForwardGNN(d.x.size(1), 7, hidden=16)
    sf.train_nodes = d.train_mask.nonzero().flatten()
    sf.train_labels = d.y[sf.train_nodes]
    ax, ae = sf.augmented(d.x, d.edge_index)
    n = d.num_nodes
    assert ax.shape == (n + 7, d.x.size(1))
    new = ae[:, d.edge_index.size(1):]
    src, dst = new
    to_virtual = dst >= n
    assert int(to_virtual.sum()) == int(d.train_mask.sum()) == int((~to_virtual).sum())  # both directions
    assert bool(d.train_mask[src[to_virtual]].all())
    assert torch.equal(dst[to_virtual] - n, d.y[src[to_virtual]])


def test_forward_learning_trains_layer_by_layer_without_backprop_across_layers(cora):
    cls = SingleForwardGNN
    pl.seed_everything(0, verbose=False)
    task = cls(cora.num_features, 7, hidden=32, layers=2, lr=0.01, epochs=15, patience=15)
    before = [p.clone() for p in task.layers[1].parameters()]
    frozen = {}

    class SnapshotLayer0(pl.Callback):  # layer 0 as it is when layer 1's phase starts
        def on_train_epoch_start(self, trainer, module):
            if module.phase == 1 and not frozen:
                frozen.update({k: v.clone() for k, v in module.layers[0].state_dict().items()})

    tr = pl.Trainer(max_epochs=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, callbacks=[SnapshotLayer0()])
    tr.fit(task, datamodule=cora)
    assert task.phase == 1 and int(task.n_active) == 2  # both layers trained, one after the other
    assert any(not torch.equal(a, b) for a, b in zip(before, task.layers[1].parameters()))
    assert frozen and all(torch.equal(v, task.layers[0].state_dict()[k]) for k, v in frozen.items())  # untouched
    assert task.best_val > 0.3  # well above chance (1/7) after a few local epochs
    # the reported accuracy is the 2-layer model's, the one that is tested, not a better-validating 1-layer one
    from apps.graph.metrics import node_accuracy

    d = cora.data
    pred = task.predict_classes(d)
    assert sorted(task.best_by_depth) == [1, 2]
    assert task.best_test == pytest.approx(float(node_accuracy(pred, d.y, d.test_mask)))
    assert task.best_val == pytest.approx(float(node_accuracy(pred, d.y, d.val_mask)))
    task.best_by_depth = {1: (0.9, 0.8), 2: (0.7, 0.6)}  # a shallower model that validated better ...
    assert (task.best_val, task.best_test) == (0.7, 0.6)  # ... is not what the 2-layer model reports
    assert task.best_depth() == (1, 0.9, 0.8)  # it is what "best depth on validation" reports


def test_graph_cache_rebuilds_for_another_tensor_an_in_place_change_or_clear():
    c, built = GraphCache(), []
    a = torch.tensor([[0, 1], [1, 0]])
    build = lambda: built.append(1) or len(built)  # noqa: E731
    assert c.get(a, build) == 1 and c.get(a, build) == 1  # cached
    b = a.clone()  # same shape and values, another tensor (possibly reusing freed memory): rebuilt
    assert c.get(b, build) == 2
    b[0, 0] = 1  # changed in place: rebuilt
    assert c.get(b, build) == 3
    c.clear()
    assert c.get(b, build) == 4


def test_model_on_a_new_graph_of_the_same_shape_uses_the_new_graph(cora):
    """The stale-operator bug: a cached adjacency keyed on data_ptr/shape could be returned for another graph."""
    d = cora.data
    torch.manual_seed(0)
    model = GNN(d.x.size(1), 7, hidden=8).eval()
    fresh = GNN(d.x.size(1), 7, hidden=8).eval()
    fresh.load_state_dict(model.state_dict())
    n, e = d.num_nodes, d.edge_index.size(1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # each graph is freed before the next of the same shape is made: memory gets reused
        edges = torch.randint(0, n, (2, e), generator=g)
        torch.testing.assert_close(model(d.x, edges), fresh(d.x, edges))
        fresh.reset_cache()
        del edges


def test_forward_learning_schedule_does_not_depend_on_how_often_validation_runs(cora):
    """Layer phases advance in the training hooks: check_val_every_n_epoch must not change the trained model."""
    states = []
    for every in (1, 4):
        pl.seed_everything(0, verbose=False)
        task = SingleForwardGNN(cora.num_features, 7, hidden=16, layers=2, lr=0.01, epochs=6, patience=3)
        tr = pl.Trainer(max_epochs=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=every)
        tr.fit(task, datamodule=cora)
        states.append((task.phase, {k: v.clone() for k, v in task.state_dict().items()}))
    assert states[0][0] == states[1][0] == 1
    for k, v in states[0][1].items():
        torch.testing.assert_close(v, states[1][1][k], msg=k)

"""Graph data: PyG classes read offline from the data dir, the papers' splits, clear errors for bad graphs."""
import pytest
import torch
from torch_geometric.data import Data

from apps.graph.data import GraphData, validate
from core.datadir import DataError


@pytest.mark.parametrize("name,split,sizes,shape", [
    ("Cora", "public", (140, 500, 1000), (2708, 1433)),
    ("CiteSeer", "public", (120, 500, 1000), (3327, 3703)),
    ("Cora_ML", "forwardgnn:3", (1916, 480, 599), (2995, 2879)),
    ("Planetoid/Cora", "public", (140, 500, 1000), (2708, 1433)),  # any PyG class by name
])
def test_real_datasets_and_splits(name, split, sizes, shape):
    dm = GraphData(name, split)
    dm.setup()
    d = dm.data
    assert tuple(d.x.shape) == shape
    assert tuple(int(d[f"{p}_mask"].sum()) for p in ("train", "val", "test")) == sizes
    assert not (d.train_mask & d.test_mask).any() and not (d.val_mask & d.test_mask).any()
    torch.testing.assert_close(d.x.sum(1)[d.x.sum(1) > 0], torch.ones(int((d.x.sum(1) > 0).sum())))  # row-normalised


def test_forwardgnn_test_folds_partition_all_nodes():
    seen = torch.zeros(2995, dtype=torch.long)
    for k in range(5):
        dm = GraphData("Cora_ML", f"forwardgnn:{k}")
        dm.setup()
        seen += dm.data.test_mask.long()
    assert bool((seen == 1).all())


def test_geom_gcn_split_selects_one_of_ten():
    dm = GraphData("Cora", "geom-gcn:3")
    dm.setup()
    assert dm.data.train_mask.dim() == 1 and int(dm.data.train_mask.sum()) == 1192


def test_missing_dataset_names_folder_and_files(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown split 'half'"):
        GraphData("Cora", "half").setup()
    monkeypatch.setenv("FFN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FFN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        GraphData("CiteSeer").setup()
    msg = str(e.value)
    assert str(tmp_path / "graph" / "Planetoid" / "CiteSeer" / "raw") in msg and "ind.citeseer.x" in msg
    with pytest.raises(DataError, match="unknown graph dataset 'Karate9'"):
        GraphData("Karate9").setup()


def _graph(**over):
    n = 5
    d = Data(x=torch.ones(n, 3), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]), y=torch.tensor([0, 1, 0, 1, 0]))
    d.train_mask = torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)
    d.val_mask = torch.tensor([0, 0, 1, 0, 0], dtype=torch.bool)
    d.test_mask = torch.tensor([0, 0, 0, 1, 1], dtype=torch.bool)
    for k, v in over.items():
        d[k] = v
    return d


@pytest.mark.parametrize("over,msg", [
    ({"edge_index": torch.tensor([[0, 7], [1, 2]])}, r"edge 1 \(7 -> 2\) is out of range for 5 nodes"),
    ({"x": torch.ones(4, 3)}, "feature matrix has 4 rows but the graph has 5 nodes"),
    ({"y": torch.tensor([0, -1, 0, 1, 0])}, r"1 training nodes have no label \(first: node 1\)"),
    ({"val_mask": torch.zeros(5, dtype=torch.bool)}, "the val split is empty"),
    ({"x": torch.tensor([[float("nan")] * 3] + [[1.0] * 3] * 4)}, "node 0 has a NaN or infinite feature"),
])
def test_bad_graphs_get_one_clear_error(over, msg):
    d = _graph(**over)
    if "x" in over:
        d.num_nodes = 5
    with pytest.raises(DataError, match=msg):
        validate(d, "toy")
    validate(_graph(), "toy")  # the unmodified graph is fine


def _write_webkb(raw, n=30, classes=3, feats=5):
    """A small graph in WebKB's raw format (geom-gcn's files): features+labels, edges, 10 split files."""
    import numpy as np

    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    lines = ["node_id\tfeature\tlabel"] + [f"{i}\t{','.join(str(int(v)) for v in rng.integers(0, 2, feats))}\t{y[i]}"
                                           for i in range(n)]
    (raw / "out1_node_feature_label.txt").write_text("\n".join(lines) + "\n")
    edges = ["node_id\tnode_id"] + [f"{i}\t{(i + 1) % n}" for i in range(n)] + [f"{i}\t{(i + 3) % n}" for i in range(n)]
    (raw / "out1_graph_edges.txt").write_text("\n".join(edges) + "\n")
    for k in range(10):
        perm = np.random.default_rng(k).permutation(n)
        m = {name: np.zeros(n, bool) for name in ("train_mask", "val_mask", "test_mask")}
        m["train_mask"][perm[:18]], m["val_mask"][perm[18:24]], m["test_mask"][perm[24:]] = True, True, True
        np.savez(raw / f"texas_split_0.6_0.2_{k}.npz", **m)
    return y


def test_geom_gcn_split_of_a_class_that_takes_no_split_argument(tmp_path):
    """WebKB (like Actor, WikipediaNetwork) ships its 10 geom-gcn splits as 2-D masks and takes no ``split=``."""
    import numpy as np

    _write_webkb(tmp_path / "graph" / "WebKB" / "texas" / "raw")
    dm = GraphData("WebKB/texas", "geom-gcn:3", root=str(tmp_path))
    dm.setup()
    perm = np.random.default_rng(3).permutation(30)
    assert sorted(dm.data.test_mask.nonzero().flatten().tolist()) == sorted(perm[24:].tolist())
    assert dm.data.train_mask.dim() == 1 and int(dm.data.train_mask.sum()) == 18

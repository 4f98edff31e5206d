"""Graph datasets from PyG's own classes, read offline from the data directory, validated, full-batch.

``GraphData(dataset="Cora", split="public")`` finds ``$FFN_DATA_DIR/graph/Planetoid/Cora/raw/ind.cora.*``,
copies the raw files to a writable cache (PyG writes ``processed/`` beside ``raw/``), and loads them with
``torch_geometric.datasets.Planetoid``. Names:

- ``Cora``, ``CiteSeer``, ``PubMed`` -> ``Planetoid``; ``Cora_ML`` (and any CitationFull name) -> ``CitationFull``;
- ``Class/Name`` for any other PyG dataset class whose raw files are under ``graph/<Class>/`` (``Amazon/Photo``).

Splits: ``public`` (the dataset's own masks), ``geom-gcn:K`` (Planetoid's 10 geom-gcn splits),
``forwardgnn:K`` (the ForwardGNN paper's 5 official node splits, Cora_ML), ``random:TRAIN/VAL`` (fractions,
stratified-free uniform split from ``seed``). A missing dataset raises :class:`DataError` naming the folder and
the files expected instead of trying to download.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from core.datadir import DataError, cache_dir, data_dir

log = logging.getLogger(__name__)
PLANETOID = ("cora", "citeseer", "pubmed")
CITATIONFULL = ("cora", "cora_ml", "citeseer", "dblp", "pubmed")


def dataset_class(name: str) -> tuple[type, str | None]:
    """``"Cora"`` -> (Planetoid, "Cora"); ``"Cora_ML"`` -> (CitationFull, "Cora_ML"); ``"Amazon/Photo"``."""
    import torch_geometric.datasets as D

    if "/" in name:
        cls_name, sub = name.split("/", 1)
        cls = getattr(D, cls_name, None)
        if cls is None or not isinstance(cls, type):
            raise DataError(f"unknown PyG dataset class {cls_name!r} in {name!r}")
        return cls, sub or None
    if name.lower() in PLANETOID:
        return D.Planetoid, name
    if name.lower() in CITATIONFULL:
        return D.CitationFull, name
    cls = getattr(D, name, None)
    if isinstance(cls, type):
        return cls, None
    raise DataError(f"unknown graph dataset {name!r}: use Cora, CiteSeer, PubMed, Cora_ML or 'PyGClass/Name'")


def _offline(cls: type) -> type:
    """A subclass whose download() fails with the folder and the files it expected."""

    def download(self):
        missing = [f for f in self.raw_file_names if not (Path(self.raw_dir) / f).exists()]
        src = Path(self.raw_dir).relative_to(cache_dir()) if Path(self.raw_dir).is_relative_to(cache_dir()) else None
        where = data_dir() / src if src else Path(self.raw_dir)
        raise DataError(f"{where}: dataset files missing: {', '.join(missing) or self.raw_file_names}. Fetch Cora's with "
                        f"`python -m pipelines.data get graph`, put PyG's raw files there, or set FFN_DATA_DIR.")

    return type(cls.__name__, (cls,), {"download": download})


def load(name: str, root: Path | None = None, **kw):
    """-> (PyG dataset, its first graph), reading ``graph/<Class>/...`` through a writable copy; ``kw`` go to the
    dataset class (``split="geom-gcn"`` reads ``<Name>/geom-gcn/raw``, copied with the rest of the tree)."""
    cls, sub = dataset_class(name)
    src = (root or data_dir()) / "graph" / cls.__name__
    dst = cache_dir() / "graph" / cls.__name__
    if src.is_dir():
        for f in src.rglob("*"):
            if f.is_file() and "processed" not in f.parts:
                out = dst / f.relative_to(src)
                if not out.exists() or out.stat().st_size != f.stat().st_size:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, out)
    if sub is not None:
        kw["name"] = sub
    try:
        ds = _offline(cls)(str(dst), **kw)
    except DataError:
        raise
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"{src}: PyG's {cls.__name__} could not read the files: {e}") from e
    return ds, ds[0]


def forwardgnn_split(k: int, n: int, root: Path | None = None) -> tuple[torch.Tensor, ...]:
    """ForwardGNN's official node split ``k`` (0-4) of CitationFull Cora_ML as boolean masks."""
    folder = (root or data_dir()) / "graph" / "forwardgnn-datasplits" / "CitationFull-Cora_ML" / "node-5splits"
    masks = []
    for part in ("train", "val", "test"):
        f = folder / f"{part}-node-index-split{k}.pt"
        if not f.exists():
            raise DataError(f"{f}: missing (ForwardGNN official splits, expected {part}-node-index-split0..4.pt)")
        idx = torch.load(f).long()
        if idx.numel() and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{f}: node index {int(idx.max())} out of range for {n} nodes")
        m = torch.zeros(n, dtype=torch.bool)
        m[idx] = True
        masks.append(m)
    return tuple(masks)


def apply_split(data, split: str, seed: int = 0, name: str = "", root: Path | None = None):
    """Set ``data.train_mask/val_mask/test_mask`` (1-D boolean) for ``split``; returns ``data``."""
    n = data.num_nodes
    kind, _, arg = split.partition(":")
    if kind == "public":
        if getattr(data, "train_mask", None) is None:
            raise DataError(f"{name}: has no public split; use split random:0.6/0.2 or forwardgnn:K")
        if data.train_mask.dim() == 2:  # geom-gcn style stacked masks: take the first
            for k in ("train_mask", "val_mask", "test_mask"):
                data[k] = data[k][:, 0]
    elif kind == "geom-gcn":
        k = int(arg or 0)
        if getattr(data, "train_mask", None) is None or data.train_mask.dim() != 2:
            raise DataError(f"{name}: split geom-gcn needs the dataset loaded with its 10 geom-gcn masks")
        for m in ("train_mask", "val_mask", "test_mask"):
            data[m] = data[m][:, k]
    elif kind == "forwardgnn":
        data.train_mask, data.val_mask, data.test_mask = forwardgnn_split(int(arg or 0), n, root)
    elif kind == "random":
        tr, _, va = (arg or "0.6/0.2").partition("/")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        a, b = int(float(tr) * n), int((float(tr) + float(va or 0.2)) * n)
        data.train_mask, data.val_mask, data.test_mask = (torch.zeros(n, dtype=torch.bool) for _ in range(3))
        data.train_mask[perm[:a]], data.val_mask[perm[a:b]], data.test_mask[perm[b:]] = True, True, True
    else:
        raise DataError(f"unknown split {split!r}: public, geom-gcn:K, forwardgnn:K or random:TRAIN/VAL")
    return data


def validate(data, name: str) -> None:
    """One clear error per problem: edges out of range, feature rows != nodes, unlabeled train nodes, empty split."""
    validate_graph(data, name)
    n = data.num_nodes
    y = data.y
    if y is None or y.size(0) != n:
        raise DataError(f"{name}: labels y must have one entry per node ({n}), got {getattr(y, 'shape', None)}")
    for part in ("train", "val", "test"):
        m = data[f"{part}_mask"]
        if int(m.sum()) == 0:
            raise DataError(f"{name}: the {part} split is empty")
    unlabeled = (data.train_mask & (y < 0)).nonzero()
    if unlabeled.numel():
        raise DataError(f"{name}: {unlabeled.numel()} training nodes have no label (first: node {int(unlabeled[0])})")


def validate_graph(data, name: str) -> None:
    """The graph itself: x [num_nodes, F] and finite, edge_index [2, E] within range."""
    n = data.num_nodes
    if data.x is None or data.x.dim() != 2:
        raise DataError(f"{name}: node features x must be a [num_nodes, F] matrix, got {getattr(data.x, 'shape', None)}")
    if data.x.size(0) != n:
        raise DataError(f"{name}: feature matrix has {data.x.size(0)} rows but the graph has {n} nodes")
    ei = data.edge_index
    if ei.dim() != 2 or ei.size(0) != 2:
        raise DataError(f"{name}: edge_index must have shape [2, E], got {tuple(ei.shape)}")
    if ei.numel():
        bad = ((ei < 0) | (ei >= n)).any(0).nonzero()
        if bad.numel():
            j = int(bad[0])
            raise DataError(f"{name}: edge {j} ({int(ei[0, j])} -> {int(ei[1, j])}) is out of range for {n} nodes "
                            f"({bad.numel()} such edges)")
    if not torch.isfinite(data.x).all():
        row = int((~torch.isfinite(data.x)).any(1).nonzero()[0])
        raise DataError(f"{name}: node {row} has a NaN or infinite feature")


def fingerprint(data, split: str, name: str) -> dict:
    """What identifies the data a model saw: graph sizes, a hash of edges/features/labels, split sizes."""
    h = hashlib.sha256()
    for t in (data.edge_index, data.x, data.y, data.train_mask, data.val_mask, data.test_mask):
        h.update(t.contiguous().numpy().tobytes())
    return {"dataset": name, "split": split, "nodes": data.num_nodes, "edges": data.edge_index.size(1),
            "features": data.x.size(1), "sha256": h.hexdigest()[:16], "train_nodes": int(data.train_mask.sum()),
            "val_nodes": int(data.val_mask.sum()), "test_nodes": int(data.test_mask.sum())}


class GraphData(pl.LightningDataModule):
    """One graph, full batch: every loader yields the same ``Data`` (x[N, F], edge_index[2, E], y[N], masks).

    Args:
        dataset: Cora, CiteSeer, PubMed, Cora_ML, or PyGClass/Name with raw files under graph/<PyGClass>/.
        split: public, geom-gcn:K (the 10 geom-gcn masks), forwardgnn:K, or random:TRAIN/VAL fractions.
        seed: seed of a random split.
        root: data directory holding graph/ (default $FFN_DATA_DIR).
        normalize_features: scale each feature row to sum 1 (Kipf & Welling).
    """

    def __init__(self, dataset: str = "Cora", split: str = "public", seed: int = 0, root: str | None = None,
                 normalize_features: bool = True):
        super().__init__()
        self.name, self.split, self.seed, self.normalize_features = dataset, split, seed, normalize_features
        self.root = Path(root) if root else None
        self.data = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        cls, _ = dataset_class(self.name)
        # Planetoid keeps its geom-gcn masks apart (split="geom-gcn"); WebKB, Actor, WikipediaNetwork always
        # carry their 10 splits as 2-D masks and take no such argument
        takes_split = "split" in inspect.signature(cls.__init__).parameters
        kw = {"split": "geom-gcn"} if self.split.startswith("geom-gcn") and takes_split else {}
        _, data = load(self.name, self.root, **kw)
        data = apply_split(data, self.split, self.seed, self.name, self.root)
        validate(data, self.name)
        if self.normalize_features:  # Kipf & Welling's preprocessing: each row sums to 1
            data.x = data.x / data.x.sum(1, keepdim=True).clamp(min=1e-12)
        self.data, self.num_classes = data, int(data.y.max()) + 1
        self.num_features = data.x.size(1)

    def fingerprint(self) -> dict:
        return fingerprint(self.data, self.split, self.name)

    def _loader(self):
        return DataLoader([self.data], batch_size=None, collate_fn=None)

    train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader


FEATURES = ("auto", "given", "identity", "degree")
IDENTITY_MAX_NODES = 20_000  # above this, one-hot node ids are a dense N x N matrix too large to be worth it


def structural_features(kind: str, edge_index: torch.Tensor, n: int, max_degree: int = 63) -> torch.Tensor:
    """Features of a graph without any: ``identity`` one-hot node ids [N, N]; ``degree`` one-hot of the degree in
    ``edge_index`` (the training edges, both directions), capped at ``max_degree`` [N, max_degree + 1]."""
    if kind == "identity":
        return torch.eye(n)
    deg = torch.zeros(n, dtype=torch.long).index_add_(0, edge_index[0], torch.ones_like(edge_index[0]))
    return torch.nn.functional.one_hot(deg.clamp(max=max_degree), max_degree + 1).float()


class LinkData(pl.LightningDataModule):
    """Link prediction on one graph, full batch: a seeded, leakage-free edge split (``val`` / ``test`` shares of the
    undirected edges, the rest for training, one negative pair per positive in every part; NetInfoF's protocol,
    :func:`apps.graph.metrics.split_edges`). Message passing and every feature derived from the graph see only the
    training edges. Each loader yields one ``Data``: x[N, F], edge_index[2, 2 E_train] (training edges, both
    directions) and ``train_pos``, ``train_neg``, ``val_pos``, ``val_neg``, ``test_pos``, ``test_neg`` [2, P].

    Args:
        dataset: Cora, CiteSeer, PubMed, Cora_ML, or PyGClass/Name with raw files under graph/<PyGClass>/.
        val: share of the edges held out for validation (model selection).
        test: share of the edges held out for testing.
        features: node features: given (the dataset's), identity (one-hot node ids), degree (one-hot training
            degree), auto (given, else identity up to 20,000 nodes, else degree).
        normalize_features: scale each feature row to sum 1.
        seed: seed of the edge split and its negatives.
        root: data directory holding graph/ (default $FFN_DATA_DIR).
    """

    def __init__(self, dataset: str = "Cora", val: float = 0.1, test: float = 0.2, features: str = "auto",
                 normalize_features: bool = False, seed: int = 0, root: str | None = None):
        super().__init__()
        if features not in FEATURES:
            raise DataError(f"features: unknown {features!r}; known: {', '.join(FEATURES)}")
        self.name, self.val, self.test, self.features = dataset, val, test, features
        self.normalize_features, self.seed = normalize_features, seed
        self.root = Path(root) if root else None
        self.data = self.split = self.features_used = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        from torch_geometric.data import Data

        from apps.graph.metrics import undirected, split_edges

        _, g = load(self.name, self.root)
        n = g.num_nodes
        if g.x is None:
            g.x = torch.zeros(n, 0)
        validate_graph(g, self.name)
        edges = undirected(g.edge_index, n).size(1)
        if edges == 0:
            raise DataError(f"{self.name}: the graph has no edges (self-loops aside): nothing to predict")
        for part, share in (("val", self.val), ("test", self.test)):
            if int(share * edges) == 0:
                raise DataError(f"{self.name}: {part}={share} of {edges} edges leaves no {part} edges; "
                                f"raise data.{part} to at least {1 / edges:.2g}")
        if int(self.val * edges) + int(self.test * edges) >= edges:
            raise DataError(f"{self.name}: val={self.val} + test={self.test} leave no training edges of {edges}")
        sp = split_edges(g.edge_index, n, self.val, self.test, self.seed)
        kind = self.features
        if kind == "auto":
            kind = "given" if g.x.size(1) else "identity" if n <= IDENTITY_MAX_NODES else "degree"
        if kind == "given" and not g.x.size(1):
            raise DataError(f"{self.name}: the dataset has no node features; use --data.features identity or degree")
        x = g.x if kind == "given" else structural_features(kind, sp.train_graph, n)
        if self.features == "auto" and kind != "given":
            log.warning("graph: %s has no node features; using %s features (%d columns)", self.name, kind, x.size(1))
        if self.normalize_features:
            x = x / x.sum(1, keepdim=True).clamp(min=1e-12)
        self.split, self.features_used, self.num_features = sp, kind, x.size(1)
        self.data = Data(x=x, edge_index=sp.train_graph, num_nodes=n, train_pos=sp.train_pos,
                         train_neg=sp.train_neg, val_pos=sp.val_pos, val_neg=sp.val_neg, test_pos=sp.test_pos,
                         test_neg=sp.test_neg)

    def fingerprint(self) -> dict:
        h = hashlib.sha256()
        for t in (self.data.x, self.split.train_pos, self.split.val_pos, self.split.test_pos, self.split.test_neg):
            h.update(t.contiguous().numpy().tobytes())
        sp = self.split
        return {"dataset": self.name, "task": "link", "nodes": sp.num_nodes, "features": self.features_used,
                "feature_dim": self.num_features, "split_seed": self.seed, "sha256": h.hexdigest()[:16],
                "train_edges": sp.train_pos.size(1), "val_edges": sp.val_pos.size(1), "test_edges": sp.test_pos.size(1)}

    def _loader(self):
        return DataLoader([self.data], batch_size=None, collate_fn=None)

    train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader

"""Captures -> labelled flows -> folds grouped by capture -> tensors (a LightningDataModule).

Default task: nDPI's test captures with nDPI's own per-flow labels (``master_proto``, the application protocol
nDPI detected -- HTTP, TLS, DNS, QUIC, ... -- where nDPI's confidence is DPI), the 7 largest classes among those
seen in at least 5 captures, at most 50 flows per capture and class, 5 folds grouped by capture and stratified by
label (``split="group:K"``: fold K tests, fold K+1 validates, the rest train). ``split="leaky:K"`` makes the same
folds over flows, ignoring captures: a control that shows how much a flow-level split inflates the figures.
"""
from __future__ import annotations

import glob
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from torch.utils.data import DataLoader, TensorDataset

from apps.traffic.features import SHORTCUTS, flow_stats, stack_tokens, stat_names
from apps.traffic.flows import Flow, read_capture
from apps.traffic.labels import FlowLabelTable, folder_label
from apps.traffic.pcap import CaptureStats
from core.datadir import DataError, data_dir, sha256

log = logging.getLogger(__name__)
DEFAULT_CAPTURES = "traffic/ndpi/pcap"
DEFAULT_LABELS = "traffic/ndpi/flow_labels.csv"
_SKIP_SUFFIXES = (".out", ".csv", ".md", ".txt", ".json")


def resolve_captures(path: str | None) -> tuple[list[Path], Path]:
    """-> (capture files, the root folder labels are relative to). A capture, a folder (recursive) or a glob."""
    if path is None:
        root = data_dir() / DEFAULT_CAPTURES
        if not root.is_dir():
            raise DataError(f"{root}: nDPI's test captures are missing: `python -m pipelines.data get traffic` fetches "
                           "them; or set FFN_DATA_DIR or --data.path")
        path = str(root)
    p = Path(path).expanduser()
    if p.is_dir():
        files, root = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                             and not f.name.endswith(_SKIP_SUFFIXES)), p
    elif any(c in path for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(path, recursive=True) if Path(f).is_file())
        root = Path(path.split("*")[0].split("?")[0].split("[")[0]).parent if files else p.parent
    else:
        files, root = [p], p.parent
    if not files:
        raise DataError(f"{path}: no capture files")
    if len(files) == 1 and not files[0].is_file():
        raise DataError(f"{files[0]}: no such capture")
    return files, root


def read_flows(files: list[Path], payload_bytes: int = 0, max_packets: int = 256,
               cache: dict | None = None) -> tuple[list[Flow], CaptureStats]:
    """Flows of every capture. A capture that cannot be read at all (empty, not a capture) is skipped, counted as
    ``unreadable_files`` and named in ``stats.problems`` with the byte offset. ``cache``: a dict its owner keeps
    across calls (a benchmark reading the same captures for every fold), keyed by (files, payload_bytes,
    max_packets); None reads afresh."""
    key = (tuple(str(f) for f in files), payload_bytes, max_packets)
    if cache is not None and key in cache:
        return cache[key]
    flows, stats = [], CaptureStats()
    for f in files:
        try:
            flows += read_capture(f, payload_bytes, max_packets, stats, name=f.name)
        except DataError as e:
            stats.counts["unreadable_files"] += 1
            stats.problems.append(str(e))
    if not flows:
        raise DataError(f"{files[0].parent}: no flows in {len(files)} capture file(s)"
                        + (f"; first problem: {stats.problems[0]}" if stats.problems else ""))
    if cache is not None:
        cache[key] = flows, stats
    return flows, stats


class TrafficData(pl.LightningDataModule):
    """Labelled flows of packet captures as netFound tokens and flow statistics, split by capture.

    Args:
        path: a capture, a folder (searched recursively) or a glob; default: nDPI's test captures.
        labels: "ndpi" (nDPI's flow_labels.csv in the data directory), "folders" (<root>/<label>/...) or the path
            of a flow-label CSV.
        label_column: the flow-label CSV's label column.
        level: "flow" (score every flow) or "capture" (a capture's label from the mean of its flows' probabilities).
        unmask: shortcut fields to stop masking: ports, ttl, ip_id, seq, tcp_ts.
        split: "group:K" (fold K of folds grouped by capture) or "leaky:K" (folds over flows: the leaky control).
        folds: number of folds.
        classes: keep the largest this many classes (0: all) among those in at least min_captures captures; default
            7 for nDPI's labels, all for the user's (folders or a CSV). Every split, grouped or leaky, uses the class
            set the grouped rule chooses; the labels dropped are logged with their reason and count (``dropped``).
        min_captures: captures a class must occur in.
        per_capture: at most this many flows of one capture and label (0: all).
        label_fraction: fraction of the training flows whose labels are used.
        payload_bytes: first payload bytes per packet given to the model (0: headers only).
        bursts: bursts per flow (netFound: 12).
        burst_packets: packets per burst (netFound: 6).
        burst_gap: seconds of silence that end a burst.
        batch_size: training batch size.
        seed: fold shuffling and label subsampling.
        pretrain_paths: more captures (each a capture, folder or glob), unlabelled, added to the pretraining flows;
            files of ``path`` itself are never added this way, so a validation or test capture never reaches
            pretraining. Default: with nDPI's captures (no ``path``), every other capture of the traffic data
            folder (Zeek, nPrint, Stratosphere: 2,540 flows); with a ``path`` of yours, none ([] for none).
        cache: flows already read, kept by the caller across data modules (see :func:`read_flows`).
    """

    def __init__(self, path: str | None = None, labels: str = "ndpi", label_column: str = "master_proto",
                 level: str = "flow", unmask: list[str] | None = None, split: str = "group:0", folds: int = 5,
                 classes: int | None = None, min_captures: int = 5, per_capture: int = 50, label_fraction: float = 1.0, payload_bytes: int = 0,
                 bursts: int = 12, burst_packets: int = 6, burst_gap: float = 1.0, batch_size: int = 64,
                 seed: int = 0, pretrain_paths: list[str] | None = None, cache: dict | None = None):
        super().__init__()
        self.cache = cache
        if pretrain_paths is None:  # everything unlabelled that is here, beside nDPI's labelled captures
            pretrain_paths = [str(data_dir() / "traffic")] if path is None else []
        self.pretrain_paths = list(pretrain_paths)
        self.path, self.labels, self.label_column, self.level = path, labels, label_column, level
        self.unmask = tuple(unmask or ())
        bad = sorted(set(self.unmask) - set(SHORTCUTS))
        if bad:
            raise DataError(f"--data.unmask: unknown field(s) {bad}; choose from {', '.join(SHORTCUTS)}")
        if level not in ("flow", "capture"):
            raise DataError(f"--data.level: expected flow or capture, got {level!r}")
        kind, _, k = split.partition(":")
        if kind not in ("group", "leaky") or not k.isdigit() or int(k) >= folds:
            raise DataError(f"--data.split: expected group:K or leaky:K with K < {folds}, got {split!r}")
        self.split, self.kind, self.fold, self.folds = split, kind, int(k), folds
        self.classes = (7 if labels == "ndpi" else 0) if classes is None else int(classes)
        self.min_captures, self.label_fraction = min_captures, label_fraction
        self.per_capture = per_capture
        self.payload_bytes, self.bursts, self.burst_packets, self.burst_gap = payload_bytes, bursts, burst_packets, \
            burst_gap
        self.batch_size, self.seed = batch_size, seed
        self.sets: dict[str, dict[str, np.ndarray]] = {}
        self.token_kw = {"unmask": self.unmask, "bursts": bursts, "burst_packets": burst_packets,
                         "burst_gap": burst_gap, "payload_bytes": payload_bytes}

    def _labeller(self, root: Path):
        if self.labels == "folders":
            return lambda f, path: folder_label(path, root)
        csv = data_dir() / DEFAULT_LABELS if self.labels == "ndpi" else Path(self.labels).expanduser()
        if not csv.is_file():
            raise DataError(f"{csv}: flow-label CSV not found (--data.labels)")
        table = FlowLabelTable(csv, self.label_column)
        return lambda f, path: table.label(f)

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        self.files, root = resolve_captures(self.path)
        flows, self.stats = read_flows(self.files, self.payload_bytes, cache=self.cache)
        by_name = {f.name: f for f in self.files}
        label = self._labeller(root)
        lab = [label(f, by_name[f.capture]) for f in flows]
        self.all_flows = flows
        self.class_names = self._choose_classes(flows, lab)
        keep = self._cap([i for i, y in enumerate(lab) if y in self.class_names], flows, lab)
        if not keep:
            raise DataError(f"{root}: no labelled flows in the chosen classes ({len(flows)} flows read)")
        self.flows = [flows[i] for i in keep]
        y = np.array([self.class_names.index(lab[i]) for i in keep])
        caps = sorted({f.capture for f in self.flows})
        group = np.array([caps.index(f.capture) for f in self.flows])
        part = self._folds(y, group)
        rng = np.random.default_rng(self.seed)
        train = np.flatnonzero(part == 2)
        if self.label_fraction < 1.0:
            take = [rng.choice(idx, max(1, round(len(idx) * self.label_fraction)), replace=False)
                    for c in range(len(self.class_names)) if len(idx := train[y[train] == c])]
            train = np.sort(np.concatenate(take))
        arrays = {**stack_tokens(self.flows, **self.token_kw),
                  "stats": np.stack([flow_stats(f, self.unmask, self.burst_gap) for f in self.flows]),
                  "y": y, "group": group, "index": np.arange(len(y))}
        for name, idx in (("train", train), ("val", np.flatnonzero(part == 1)), ("test", np.flatnonzero(part == 0))):
            self.sets[name] = {k: v[idx] for k, v in arrays.items()}
        self.stat_names = stat_names(self.unmask)
        unit = "captures" if self.level == "capture" else "flows"
        sizes = [len(np.unique(self.sets[s]["group"])) if self.level == "capture" else len(self.sets[s]["y"])
                 for s in ("train", "val", "test")]
        log.info("traffic: %d captures, %s; %d labelled flows of %d captures in %d classes; train / val / test "
                 "%d / %d / %d %s", len(self.files), dict(self.stats.counts), len(y), len(caps),
                 len(self.class_names), *sizes, unit)
        if self.dropped:
            log.warning("traffic: kept %d of %d labels; dropped %s", len(self.class_names),
                        len(self.class_names) + len(self.dropped),
                        "; ".join(f"{c} ({why})" for c, why in list(self.dropped.items())[:20])
                        + (f"; and {len(self.dropped) - 20} more" if len(self.dropped) > 20 else ""))
        for p in self.stats.problems[:5]:
            log.warning("traffic: %s", p)

    def _cap(self, keep: list[int], flows: list[Flow], lab: list) -> list[int]:
        """At most ``per_capture`` flows of each (capture, label), drawn with the seed, so that one capture (797
        near-identical HTTP flows in WebattackRCE.pcap) cannot dominate a fold."""
        if not self.per_capture:
            return keep
        cells: dict[tuple, list[int]] = {}
        for i in keep:
            cells.setdefault((flows[i].capture, lab[i]), []).append(i)
        rng = np.random.default_rng(self.seed)
        return sorted(j for idx in cells.values() for j in
                      (idx if len(idx) <= self.per_capture else rng.choice(idx, self.per_capture, replace=False)))

    def _choose_classes(self, flows: list[Flow], lab: list) -> list[str]:
        n: dict[str, int] = {}
        caps: dict[str, set] = {}
        for f, y in zip(flows, lab):
            if y is not None:
                n[y] = n.get(y, 0) + 1
                caps.setdefault(y, set()).add(f.capture)
        # one rule for every split: a leaky control must score the task the grouped split scores
        ok = sorted((c for c in n if len(caps[c]) >= self.min_captures), key=lambda c: (-n[c], c))
        kept = ok[:self.classes] if self.classes else ok
        self.dropped = {c: f"in {len(caps[c])} captures < --data.min_captures {self.min_captures}"
                        for c in sorted(n) if c not in ok}
        self.dropped.update({c: f"{n[c]} flows, beyond the largest --data.classes {self.classes}"
                             for c in ok[len(kept):]})
        if len(kept) < 2:
            raise DataError(f"fewer than 2 classes with labelled flows in >= {self.min_captures} captures "
                            f"({len(n)} labels seen); lower --data.min_captures or use other captures")
        return sorted(kept)

    def _folds(self, y: np.ndarray, group: np.ndarray) -> np.ndarray:
        """-> per flow 0 test, 1 validation, 2 train."""
        if self.kind == "group":
            cv = StratifiedGroupKFold(self.folds, shuffle=True, random_state=self.seed)
            parts = [test for _, test in cv.split(np.zeros(len(y)), y, group)]
        else:
            cv = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
            parts = [test for _, test in cv.split(np.zeros(len(y)), y)]
        part = np.full(len(y), 2)
        part[parts[(self.fold + 1) % self.folds]] = 1
        part[parts[self.fold]] = 0
        return part

    def tokens_of(self, flows: list[Flow]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in stack_tokens(flows, **self.token_kw).items()}

    def positions(self, split: str, idx) -> np.ndarray:
        """Rows of ``sets[split]`` holding the flows with dataset indices ``idx`` (``index`` is sorted)."""
        return np.searchsorted(self.sets[split]["index"], np.asarray(idx))

    def pretrain_flows(self) -> list[Flow]:
        """Every flow (labelled or not) of the captures that hold no validation or test flow (under the leaky split:
        every flow that is not a validation or test flow), and every flow of ``pretrain_paths``' captures that are
        not among ``path``'s."""
        held = {self.flows[i].capture for s in ("val", "test") for i in self.sets[s]["index"]}
        if self.kind == "group":
            own = [f for f in self.all_flows if f.capture not in held]
        else:  # the leaky control: no validation or test flow either (its captures are shared by design)
            held_flows = {id(self.flows[i]) for s in ("val", "test") for i in self.sets[s]["index"]}
            own = [f for f in self.all_flows if id(f) not in held_flows]
        mine = {f.resolve() for f in self.files}
        extra = sorted({f for p in self.pretrain_paths for f in resolve_captures(p)[0] if f.resolve() not in mine})
        return own + (read_flows(extra, self.payload_bytes, cache=self.cache)[0] if extra else [])

    def dataset(self, name: str) -> TensorDataset:
        s = self.sets[name]
        return TensorDataset(*(torch.from_numpy(s[k]) for k in ("packets", "bursts", "flow", "payload", "y", "group")),
                             torch.arange(len(s["y"])))

    def train_dataloader(self):
        return DataLoader(self.dataset("train"), batch_size=self.batch_size, shuffle=True, drop_last=False)

    def val_dataloader(self):
        return DataLoader(self.dataset("val"), batch_size=512)

    def test_dataloader(self):
        return DataLoader(self.dataset("test"), batch_size=512)

    def fingerprint(self) -> dict:
        """What the run's params record: file counts and hashes of the label file, never an address."""
        counts = {f"parse_{k}": v for k, v in self.stats.counts.items()}
        return {"captures": len(self.files), "classes": ",".join(self.class_names)[:480], "split": self.split,
                "labels_dropped": len(self.dropped),
                "level": self.level, "unmask": ",".join(self.unmask) or "none",
                **{f"flows_{k}": len(v["y"]) for k, v in self.sets.items()},
                **{f"captures_{k}": int(len(np.unique(v["group"]))) for k, v in self.sets.items()},
                **counts, **({"labels_sha256": sha256(data_dir() / DEFAULT_LABELS)[:16]}
                             if self.labels == "ndpi" else {"labels": self.labels})}

"""Spike-train classification data: FSDD wavs encoded to spikes, SHD-format HDF5, or the synthetic delay task.

``SpikeData(source="fsdd")`` reads ``$FFN_DATA_DIR/audio/fsdd/recordings/{digit}_{speaker}_{index}.wav``, encodes
each file with :class:`apps.spiking.encode.SpikeEncoder` and caches the set on disk keyed by the encoder settings
and the file list. Splits: ``official`` (index 0-4 test, the next ``val_recordings`` (5: 5-9) validation, the rest
train: the same speakers everywhere) and ``speaker:NAME`` (that speaker is the test set; index 0 to
``val_recordings - 1`` of the others validation).
``source="path/to/shd_train.h5"`` reads SHD's layout (``spikes/times`` [s], ``spikes/units``, ``labels``; a
``shd_test.h5`` beside it is the test set), binned in 10 ms. ``source="synthetic"``: see ``synthetic.py``.
Batches: ``(spikes[B, T, C] float, label[B] long)``.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from apps.spiking.encode import SpikeEncoder, read_wav
from apps.spiking.synthetic import GROUPS, burst_order_task, cyclic_orders
from core.datadir import DataError, cache_dir, data_dir, fsdd_files

log = logging.getLogger(__name__)


def encode_fsdd(folder: Path, enc: SpikeEncoder) -> dict:
    """Encode (or load from the cache) every recording: spikes[N, T, C] uint8, labels, speakers, indices."""
    files = fsdd_files(folder)
    h = hashlib.sha256(enc.key().encode())
    for p, *_ in files:
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    path = cache_dir() / "spiking" / f"fsdd-{h.hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path)
    waves, resampled, truncated = [], 0, 0
    for p, *_ in files:
        x, sr = read_wav(p)
        if sr != enc.sample_rate:
            resampled += 1
            log.warning("%s: %d Hz, resampled to %d Hz", p, sr, enc.sample_rate)
        truncated += len(x) / sr * 1000 > enc.max_bins * enc.bin_ms
        waves.append((x, sr))
    out = {"spikes": enc.encode(waves).to(torch.uint8), "labels": torch.tensor([f[1] for f in files]),
           "speakers": [f[2] for f in files], "index": torch.tensor([f[3] for f in files]),
           "stats": {"files": len(files), "resampled": resampled, "truncated": int(truncated)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    torch.save(out, tmp)
    tmp.replace(path)
    return out


def read_shd(path: Path, bin_ms: float = 10.0, max_bins: int = 100, channels: int = 700, classes: int = 20):
    """SHD HDF5 -> (spikes[N, T, channels] uint8, labels[N])."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise DataError(f"{path}: missing field '{key}' (SHD layout: spikes/times, spikes/units, labels)")
        times, units, labels = f["spikes/times"][:], f["spikes/units"][:], np.asarray(f["labels"][:])
    if len(times) != len(units) or len(times) != len(labels):
        raise DataError(f"{path}: {len(times)} spike-time rows, {len(units)} unit rows, {len(labels)} labels")
    bad = np.nonzero((labels < 0) | (labels >= classes))[0]
    if bad.size:
        raise DataError(f"{path}: sample {bad[0]} has label {labels[bad[0]]}, expected 0..{classes - 1}")
    out = torch.zeros(len(labels), max_bins, channels, dtype=torch.uint8)
    for n, (t, u) in enumerate(zip(times, units)):
        t, u = np.asarray(t), np.asarray(u).astype(np.int64)
        if len(t) != len(u):
            raise DataError(f"{path}: sample {n}: {len(t)} spike times but {len(u)} units")
        if u.size and (u.min() < 0 or u.max() >= channels):
            raise DataError(f"{path}: sample {n}: unit {int(u.max())} outside 0..{channels - 1}")
        b = (t * 1000.0 / bin_ms).astype(np.int64)
        keep = b < max_bins
        np.add.at(out[n].numpy(), (b[keep], u[keep]), 1)
    return out, torch.as_tensor(labels.astype(np.int64))


class SpikeData(pl.LightningDataModule):
    """Spike trains [B, T, C] and labels: FSDD wavs encoded by ``SpikeEncoder``, an SHD HDF5 file, or the synthetic task.

    Args:
        source: fsdd, synthetic, or the path of an SHD-format HDF5 file.
        split: official (FSDD recordings 0-4 test) or speaker:NAME (that speaker held out).
        batch_size: samples per batch.
        seed: seed of the validation split and the synthetic task.
        val_recordings: FSDD recording indices per speaker and digit held out for validation (5: 300 clips on
            the official split, where accuracy saturates near 98 %, one clip = 0.33 %; 10: 600 clips).
        encoder: SpikeEncoder options (filterbank, channels, bin_ms, max_bins, ...).
        synthetic: options of the synthetic task.
    """

    def __init__(self, source: str = "fsdd", split: str = "official", batch_size: int = 64, seed: int = 0,
                 val_recordings: int = 5, encoder: dict | None = None, synthetic: dict | None = None):
        super().__init__()
        if not 1 <= val_recordings <= 40:
            raise DataError(f"val_recordings={val_recordings}: 1 to 40 of FSDD's 50 recordings per digit and speaker")
        self.source, self.split, self.batch_size, self.seed = source, split, batch_size, seed
        self.val_recordings = val_recordings
        self.encoder = SpikeEncoder(**(encoder or {}))
        self.synthetic = synthetic or {}
        self.sets: dict[str, TensorDataset] = {}
        self.stats: dict = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        if self.source == "synthetic":
            parts = [burst_order_task(n, seed=self.seed + k, **self.synthetic)
                     for k, n in enumerate((2000, 500, 500))]
            self.sets = {name: TensorDataset(x, y) for name, (x, y) in zip(("train", "val", "test"), parts)}
            self.num_classes = len(cyclic_orders(self.synthetic.get("groups", GROUPS)))
            self.channels = parts[0][0].size(-1)
        elif self.source == "fsdd":
            self._fsdd()
        else:
            self._shd(Path(self.source))
        self.stats.update({f"{k}_samples": len(v) for k, v in self.sets.items()})

    def _fsdd(self):
        folder = data_dir() / "audio" / "fsdd" / "recordings"
        if self.split.startswith("speaker:"):  # checked before the (minute-long) encoding
            who, known = self.split.split(":", 1)[1], sorted({f[2] for f in fsdd_files(folder)})
            if who not in known:
                raise DataError(f"split {self.split!r}: no speaker {who!r}; FSDD has {known}")
        elif self.split != "official":
            raise DataError(f"unknown split {self.split!r}: official or speaker:NAME")
        d = encode_fsdd(folder, self.encoder)
        x, y, idx, spk = d["spikes"].float(), d["labels"], d["index"], np.array(d["speakers"])
        self.stats = dict(d["stats"])
        if self.split == "official":
            end = 5 + self.val_recordings
            parts = {"test": idx < 5, "val": (idx >= 5) & (idx < end), "train": idx >= end}
        else:
            held, v = torch.from_numpy(spk == self.split.split(":", 1)[1]), self.val_recordings
            parts = {"test": held, "val": ~held & (idx < v), "train": ~held & (idx >= v)}
        self.sets = {k: TensorDataset(x[m], y[m]) for k, m in parts.items()}
        self.num_classes, self.channels = 10, x.size(-1)

    def _shd(self, path: Path):
        if not path.exists():
            raise DataError(f"{path}: not found (source is 'fsdd', 'synthetic' or an SHD .h5 file)")
        x, y = read_shd(path)
        test = path.with_name(path.name.replace("train", "test"))
        if test != path and test.exists():
            xt, yt = read_shd(test)
        else:  # no test file: hold out 20 %
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(len(y), generator=g)
            k = len(y) // 5
            xt, yt, x, y = x[perm[:k]], y[perm[:k]], x[perm[k:]], y[perm[k:]]
        k = len(y) // 10  # validation from the training file
        self.sets = {"train": TensorDataset(x[k:].float(), y[k:]), "val": TensorDataset(x[:k].float(), y[:k]),
                     "test": TensorDataset(xt.float(), yt)}
        self.num_classes, self.channels = int(max(int(y.max()), int(yt.max())) + 1), x.size(-1)

    def _loader(self, name, shuffle):
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.sets[name], batch_size=self.batch_size, shuffle=shuffle, generator=g)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)

"""FSDD recordings -> audio items -> questions with checkable answers -> cached encoder features (a DataModule).

An **item** is one clip (a recording at gain 1.0 or 0.1, chosen with the seed) or 2-3 recordings of one speaker in
a row with 0.1 s of silence between; every item gets one question of each type that applies to it (see
:mod:`apps.audio.questions`), test items also the rephrased one. Splits:

- ``official``: recording index 0-4 test (FSDD's own split), 5-9 validation, 10-49 train;
- ``speaker:<name>``: all of that speaker's recordings test, index 0-4 of the others validation, the rest train.

Multi-digit items are made within a split from its own recordings, so no recording crosses splits. Features of each
item are computed once per encoder and cached in ``$FFN_CACHE/audio/<encoder>-<settings>.pt`` (keyed by the item's
recipe: its recordings and gain).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import soundfile as sf
import torch
import torchaudio
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from apps.audio.encoders import ENCODERS, build_encoder, encode_waves
from apps.audio.questions import (DIGITS, MULTI_TYPES, ORDINALS, SINGLE_TYPES, SPEAKERS, TEMPLATES, TYPES, Vocab,
                                  answer, oracle_words)
from core.datadir import DataError, cache_dir, data_dir, fsdd_files

log = logging.getLogger(__name__)
SAMPLE_RATE = 8000
GAP = 800  # samples of silence between the digits of a multi-digit item
QUIET = 0.1  # gain of a quiet item (-20 dB)


def read_wave(path: str | Path, counts: Counter | None = None, max_seconds: float = 10.0) -> np.ndarray:
    """A mono float32 wave at 8 kHz. Another rate is resampled (counted as ``resampled``), a longer clip cut to
    ``max_seconds`` (``cut``); an unreadable or empty file is a :class:`DataError` naming it."""
    counts = counts if counts is not None else Counter()
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise DataError(f"{path}: not a readable audio file ({e})") from None
    if x.size == 0:
        raise DataError(f"{path}: empty audio file (0 samples)")
    x = x.mean(1)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: sample {int(np.argmin(np.isfinite(x)))} is not a finite number")
    if sr != SAMPLE_RATE:
        counts["resampled"] += 1
        log.info("%s: %d Hz resampled to %d Hz", path, sr, SAMPLE_RATE)
        x = torchaudio.functional.resample(torch.from_numpy(x), sr, SAMPLE_RATE).numpy()
    if len(x) > max_seconds * SAMPLE_RATE:
        counts["cut"] += 1
        x = x[: int(max_seconds * SAMPLE_RATE)]
    return x


def recipe_key(item: dict) -> str:
    return "+".join(item["clips"]) + f"@{item['gain']:g}"


def compose(item: dict, waves: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for i, c in enumerate(item["clips"]):
        parts += ([np.zeros(GAP, np.float32)] if i else []) + [waves[c]]
    return np.concatenate(parts) * item["gain"]


def encode_items(name: str, items: list[dict], waves: dict[str, np.ndarray], batch: int = 32) -> dict[str, torch.Tensor]:
    """Features of every item for encoder ``name``: recipe key -> float16 [frames, dim], from the disk cache where
    present (the cache file is updated atomically with the new ones)."""
    enc = build_encoder(name)
    tag = hashlib.sha1(json.dumps(enc.settings, sort_keys=True).encode()).hexdigest()[:10]
    path = cache_dir() / "audio" / f"{name}-{tag}.pt"
    cache: dict[str, torch.Tensor] = torch.load(path, weights_only=True) if path.exists() else {}
    todo = sorted({recipe_key(it): it for it in items if recipe_key(it) not in cache}.values(),
                  key=lambda it: sum(len(waves[c]) for c in it["clips"]))
    for i in range(0, len(todo), batch):
        feats, fmask = encode_waves(enc, [torch.from_numpy(compose(it, waves)) for it in todo[i:i + batch]],
                                    SAMPLE_RATE)
        for it, f, m in zip(todo[i:i + batch], feats, fmask):
            cache[recipe_key(it)] = f[m].half().clone()
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(cache, tmp)
        tmp.replace(path)
    return {recipe_key(it): cache[recipe_key(it)] for it in items}


class QADataset(Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class AudioQA(pl.LightningDataModule):
    """Questions about FSDD clips, with the features of each item from every chosen encoder.

    Args:
        encoders: encoder names (apps.audio.encoders.ENCODERS); more than one makes an ensemble.
        split: "official" or "speaker:<name>".
        multi_fraction: multi-digit items per split, as a fraction of its single-clip items.
        subset: keep at most this many recordings of each (digit, speaker) per split (0: all; for tests).
        batch_size: questions per batch.
        seed: gains, multi-digit items, templates and verification digits.
        text: the question tokenizer (``apps.audio.questions.Vocab``, the default, or a pretrained LM's
            ``apps.audio.hf_lm.HFText``).
    """

    def __init__(self, encoders: list[str] | None = None, split: str = "official", multi_fraction: float = 0.5,
                 subset: int = 0, batch_size: int = 64, seed: int = 0, text=None):
        super().__init__()
        self.encoders = list(encoders or ["mel"])
        bad = [e for e in self.encoders if e not in ENCODERS]
        if bad:
            raise DataError(f"--data.encoders: unknown {bad}; choose from {', '.join(ENCODERS)}")
        self.split, self.multi_fraction, self.subset = split, multi_fraction, subset
        self.batch_size, self.seed = batch_size, seed
        kind, _, who = split.partition(":")
        if not (split == "official" or (kind == "speaker" and who in SPEAKERS)):
            raise DataError(f"--data.split: expected official or speaker:<{'|'.join(SPEAKERS)}>, got {split!r}")
        self.vocab = text if text is not None else Vocab()
        self.counts: Counter = Counter()
        self._ready = False

    @property
    def folder(self) -> Path:
        return data_dir() / "audio" / "fsdd" / "recordings"

    def _split_of(self, speaker: str, index: int) -> str:
        if self.split == "official":
            return "test" if index < 5 else "val" if index < 10 else "train"
        if speaker == self.split.partition(":")[2]:
            return "test"
        return "val" if index < 5 else "train"

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        rng = np.random.default_rng(self.seed)
        recs: dict[str, list] = {"train": [], "val": [], "test": []}
        per: Counter = Counter()
        for path, digit, speaker, index in fsdd_files(self.folder):
            s = self._split_of(speaker, index)
            if self.subset and per[(s, digit, speaker)] >= self.subset:
                continue
            per[(s, digit, speaker)] += 1
            recs[s].append((path, digit, speaker))
        self.waves = {p.stem: read_wave(p, self.counts) for s in recs for p, _, _ in recs[s]}
        self.long_threshold = float(np.median([len(self.waves[p.stem]) for p, _, _ in recs["train"]]))
        self.items: list[dict] = []
        self.sets: dict[str, QADataset] = {}
        for s in ("train", "val", "test"):
            items = [{"clips": [p.stem], "digits": [d], "speaker": spk,
                      "gain": float(rng.choice([1.0, QUIET])), "split": s} for p, d, spk in recs[s]]
            by_speaker: dict[str, list] = {}
            for p, d, spk in recs[s]:
                by_speaker.setdefault(spk, []).append((p.stem, d))
            for _ in range(int(len(items) * self.multi_fraction)):
                spk = sorted(by_speaker)[rng.integers(len(by_speaker))]
                pick = rng.choice(len(by_speaker[spk]), int(rng.integers(2, 4)), replace=False)
                items.append({"clips": [by_speaker[spk][j][0] for j in pick],
                              "digits": [by_speaker[spk][j][1] for j in pick], "speaker": spk, "gain": 1.0,
                              "split": s})
            for it in items:
                it["long"] = sum(len(self.waves[c]) for c in it["clips"]) > self.long_threshold
            base = len(self.items)
            self.items += items
            self.sets[s] = QADataset(self._questions(items, base, rng, rephrased=s == "test"))
        self.features = {name: encode_items(name, self.items, self.waves) for name in self.encoders}
        self.oracle = [torch.tensor(self.vocab.oracle(oracle_words(it))) for it in self.items]
        self._ready = True
        log.info("audio QA %s: %s questions; %s", self.split, {s: len(d) for s, d in self.sets.items()},
                 dict(self.counts))

    def _questions(self, items: list[dict], base: int, rng, rephrased: bool) -> list[dict]:
        rows = []
        for i, it in enumerate(items):
            for qtype in (SINGLE_TYPES if len(it["clips"]) == 1 else MULTI_TYPES):
                arg = (int(rng.integers(10)) if rng.random() < 0.5 else it["digits"][0]) if qtype == "verify" \
                    else int(rng.integers(len(it["digits"]))) if qtype == "order" else None
                temps = TEMPLATES[qtype]
                for t, reph in [(temps[int(rng.integers(len(temps) - 1))], False)] + \
                        ([(temps[-1], True)] if rephrased else []):
                    text = t.format(d=DIGITS[arg] if qtype == "verify" else "",
                                    o=ORDINALS[arg] if qtype == "order" else "")
                    rows.append({"tokens": self.vocab.question(text), "text": text,
                                 "answer": self.vocab.answer_id(answer(qtype, it, arg)),
                                 "qtype": TYPES.index(qtype), "item": base + i, "rephrased": reph})
        return rows

    def collate(self, rows: list[dict]) -> dict:
        items = [r["item"] for r in rows]
        pad = self.vocab.pad
        out = {"tokens": pad_sequence([torch.tensor(r["tokens"]) for r in rows], batch_first=True, padding_value=pad),
               "answer": torch.tensor([r["answer"] for r in rows]), "qtype": torch.tensor([r["qtype"] for r in rows]),
               "rephrased": torch.tensor([r["rephrased"] for r in rows]), "item": torch.tensor(items),
               "oracle": pad_sequence([self.oracle[i] for i in items], batch_first=True, padding_value=pad)}
        out["audio"] = {}
        for name in self.encoders:
            f = [self.features[name][recipe_key(self.items[i])].float() for i in items]
            lens = torch.tensor([len(x) for x in f])
            x = pad_sequence(f, batch_first=True)
            out["audio"][name] = (x, torch.arange(x.shape[1]) < lens[:, None])
        return out

    def feature_stats(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Encoder name -> (mean, std) per feature over the training items' frames."""
        out = {}
        for n in self.encoders:
            x = torch.cat([self.features[n][recipe_key(it)].float() for it in self.items if it["split"] == "train"])
            out[n] = (x.mean(0), x.std(0))
        return out

    def feature_dims(self) -> dict[str, int]:
        return {n: int(next(iter(self.features[n].values())).shape[1]) for n in self.encoders}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle, collate_fn=self.collate,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)

    def fingerprint(self) -> dict:
        return {"split": self.split, "encoders": ",".join(self.encoders), "items": len(self.items),
                **{f"{s}_questions": len(d) for s, d in self.sets.items()}, **dict(self.counts)}

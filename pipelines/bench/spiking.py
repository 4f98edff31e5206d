"""``python -m pipelines.bench spiking``: no delays vs fixed random delays vs learned delays, and the delay layer's speed.

Sections (``--sections``): ``synthetic`` the volley-order task (``apps/spiking/synthetic.py``); ``fsdd`` spoken
digits as spike trains, the official split (3 seeds) and leave-one-speaker-out (each of the 6 speakers held out
in turn, seeds cycling over the folds, with per-fold paired gaps); ``speed`` the delay layer against a dense temporal
convolution with the full max-delay kernel (what a DCLS convolution computes), training step and inference,
interleaved in one process. Accuracy: test, integer (rounded) delays, mean ± std over ``--seeds``. One MLflow run
in the ``bench`` experiment with the tables as artifacts. ``--quick``: one seed, fewer epochs, official split.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from apps.spiking.data import SpikeData, fsdd_files
from apps.spiking.delays import DelayedLinear
from apps.spiking.models import DelaySNN, count_parameters
from apps.spiking.task import SpikeClassifier
from core.datadir import DataError, data_dir
from pipelines.bench.sections import add_common, check_sections, quiet, run_sections
from pipelines.bench.table import markdown, mean_std
from pipelines.runner import set_threads

SECTIONS = ("synthetic", "fsdd", "speed")
VARIANTS = ("none", "random", "learned")


def _train(dm, seed: int, epochs: int, **model_kw) -> tuple[float, dict, float]:
    pl.seed_everything(seed, verbose=False)
    model = DelaySNN(dm.channels, dm.num_classes, **model_kw)
    task = SpikeClassifier(model)
    tr = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
    t = time.time()
    tr.fit(task, datamodule=dm)
    sec = (time.time() - t) / epochs
    return 100 * tr.test(task, datamodule=dm, verbose=False)[0]["test_acc"], count_parameters(model), sec


def _runs(a, label: str, dm: SpikeData, seeds, epochs: int, **model_kw) -> dict:
    """variant -> [(acc, params, s/epoch) per seed]."""
    dm.setup()
    out = {v: [] for v in VARIANTS}
    for v in VARIANTS:
        for seed in seeds:
            acc, params, sec = _train(dm, seed, epochs, delays=v, **model_kw)
            out[v].append((acc, params, sec))
            print(f"  {label} {v} seed {seed}: {acc:.1f}% ({sec:.1f} s/epoch)", flush=True)
    return out


def _row(label: str, v: str, runs: list, n: str) -> list:
    accs, (_, params, _) = [r[0] for r in runs], runs[0]
    return [label, v, n, mean_std(accs, 1), params["weights"], params["positions"],
            f"{statistics.mean(r[2] for r in runs):.1f}"]


HEAD = ["data", "delays", "seeds", "test acc %", "weights", "delay positions", "s / epoch"]


def _compare(a, datasets: list[tuple[str, SpikeData]], epochs: int, **model_kw) -> list[list]:
    rows = []
    for label, dm in datasets:
        runs = _runs(a, label, dm, a.seeds, epochs, **model_kw)
        rows += [_row(label, v, runs[v], str(len(a.seeds))) for v in VARIANTS]
    return rows


def _loso(a, epochs: int, **model_kw) -> list[list]:
    """Leave one speaker out, every speaker in turn; fold k trains with seed ``seeds[k % len(seeds)]``.
    Rows: each variant over the folds, then the per-fold paired gaps (learned - random, random - none)."""
    speakers = sorted({f[2] for f in fsdd_files(data_dir() / "audio" / "fsdd" / "recordings")})
    folds = {v: [] for v in VARIANTS}
    for k, who in enumerate(speakers):
        seed = a.seeds[k % len(a.seeds)]
        runs = _runs(a, f"FSDD speaker:{who}", SpikeData("fsdd", split=f"speaker:{who}", batch_size=64), [seed],
                     epochs, **model_kw)
        for v in VARIANTS:
            folds[v] += runs[v]
    n = f"{len(speakers)} folds, seeds {','.join(map(str, sorted(set(a.seeds[:len(speakers)]))))}"
    label = "FSDD leave-one-speaker-out"
    rows = [_row(label, v, folds[v], n) for v in VARIANTS]
    for hi, lo in (("learned", "random"), ("random", "none")):
        gaps = [h[0] - l[0] for h, l in zip(folds[hi], folds[lo])]
        wins = sum(g > 0 for g in gaps)
        rows.append([label, f"{hi} - {lo}, paired per fold", n,
                     f"{mean_std(gaps, 1)} (> 0 in {wins}/{len(gaps)}: {' '.join(f'{g:+.1f}' for g in gaps)})",
                     "", "", ""])
    return rows


def synthetic(a) -> str:
    dm = SpikeData("synthetic", batch_size=64)
    return markdown(HEAD, _compare(a, [("order task (chance 50)", dm)], a.synthetic_epochs, hidden=64, max_delay=16))


def fsdd(a) -> str:
    rows = []
    for s in a.splits:
        if s == "loso":
            rows += _loso(a, a.epochs, hidden=a.hidden, max_delay=25)
        else:
            rows += _compare(a, [(f"FSDD {s}", SpikeData("fsdd", split=s, batch_size=64))], a.epochs,
                             hidden=a.hidden, max_delay=25)
    return markdown(HEAD, rows)


def speed(a) -> str:
    """Per step, FSDD-sized: x[T=80, B=64, 64] spikes -> hidden 128, D = 25 bins."""
    t_len, b, c_in, c_out, d = 80, 64, 64, a.hidden * 2, 25
    torch.manual_seed(0)
    x = (torch.rand(t_len, b, c_in) < 0.1).float()
    ours = DelayedLinear(c_in, c_out, d, delays="learned", sigma=2.0)
    dense = torch.nn.Conv1d(c_in, c_out, d, bias=False)
    xb = x.permute(1, 2, 0).contiguous()
    xg, xbg = x.clone().requires_grad_(), xb.clone().requires_grad_()  # a hidden layer: its input needs a gradient

    def train_ours(inp=x):
        ours.zero_grad()
        ours(inp).square().mean().backward()

    def train_dense(inp=xb):
        dense.zero_grad()
        dense(F.pad(inp, (d - 1, 0))).square().mean().backward()

    rounded = DelayedLinear(c_in, c_out, d, delays="learned")
    rounded.load_state_dict(ours.state_dict())
    rounded.round_delays()
    rounded.eval()

    def infer_train_form():
        with torch.no_grad():
            ours(x)

    def infer_rounded():
        with torch.no_grad():
            rounded(x)

    def infer_dense():
        with torch.no_grad():
            dense(F.pad(xb, (d - 1, 0)))

    fns = {"train ours": train_ours, "train dense": train_dense, "infer training form": infer_train_form,
           "infer integer delays": infer_rounded, "train ours hidden": lambda: train_ours(xg),
           "train dense hidden": lambda: train_dense(xbg), "infer dense": infer_dense, "infer integer 2": infer_rounded}
    times = {k: [] for k in fns}
    for f in fns.values():
        for _ in range(3):
            f()
    for pair in (("train ours", "train dense"), ("train ours hidden", "train dense hidden"),
                 ("infer training form", "infer integer delays"), ("infer dense", "infer integer 2")):
        for _ in range(a.reps):  # each pair interleaved, so both sides see the same machine load
            for k in pair:
                t = time.perf_counter()
                fns[k]()
                times[k].append((time.perf_counter() - t) * 1e3)
    m = {k: statistics.median(v) for k, v in times.items()}
    return markdown(["measure", "ours ms", "reference ms", "ratio ours / reference"], [
        ["training step (fwd+bwd), learned delays vs dense Conv1d with the full D-tap kernel",
         f"{m['train ours']:.1f}", f"{m['train dense']:.1f}", f"{m['train ours'] / m['train dense']:.2f}"],
        ["the same, input needs a gradient (a hidden layer)", f"{m['train ours hidden']:.1f}",
         f"{m['train dense hidden']:.1f}", f"{m['train ours hidden'] / m['train dense hidden']:.2f}"],
        ["inference, integer delays (one tap) vs the training form", f"{m['infer integer delays']:.1f}",
         f"{m['infer training form']:.1f}", f"{m['infer integer delays'] / m['infer training form']:.2f}"],
        ["inference, integer delays vs dense Conv1d with the full D-tap kernel (the DCLS form)",
         f"{m['infer integer 2']:.1f}", f"{m['infer dense']:.1f}", f"{m['infer integer 2'] / m['infer dense']:.2f}"],
    ])


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench spiking", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, official split, few epochs")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--splits", nargs="+", default=["official", "loso"],
                    help="official, speaker:NAME, or loso (every speaker held out in turn)")
    ap.add_argument("--epochs", type=int, default=12, help="FSDD epochs per training")
    ap.add_argument("--synthetic-epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=64)
    add_common(ap, SECTIONS)
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.splits, a.epochs, a.synthetic_epochs, a.reps = a.seeds[:1], a.splits[:1], 2, 3, 5
    return check_sections(ap, a, SECTIONS)


def main(argv: list[str]) -> int:
    a = parse(argv)
    quiet()
    threads = set_threads({"threads": a.threads})
    if "fsdd" in a.sections:
        try:
            for s in a.splits:  # fail fast (and fill the spike cache) before any training
                SpikeData("fsdd", split="official" if s == "loso" else s).setup()
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    params = {"sections": ",".join(a.sections), "seeds": ",".join(map(str, a.seeds)), "threads": threads,
              "splits": ",".join(a.splits), "epochs": a.epochs, "hidden": a.hidden}
    return run_sections("spiking", a, {s: globals()[s] for s in SECTIONS}, params)

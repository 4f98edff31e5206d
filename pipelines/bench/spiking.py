"""``python -m pipelines.bench spiking``: no delays vs fixed random delays vs learned delays, the front end, and the
delay layer's speed.

Sections (``--sections``): ``synthetic`` the burst-order task (``apps/spiking/synthetic.py``: the same single-frame
statistics in every class, so only delays can solve it); ``encoders`` the gammatone and mel front ends with learned
delays on the official split, chosen by validation accuracy; ``delay_range`` the longest delay (``--max-delays``) with
learned delays on the official split, chosen by validation accuracy; ``fsdd`` spoken digits as spike trains, the official
split and leave-one-speaker-out (each of the 6 speakers held out in turn, every seed on every fold, with
per-fold paired gaps); ``speed`` the delay layer against a dense temporal convolution with the full max-delay
kernel and against its DCLS form (the same kernel built from the positions, then that convolution; checked equal
first), training step and inference, interleaved in one process.
Accuracy: test at the epoch of best validation accuracy, both with the delays rounded to integers (the model
that is served), mean ± std over ``--seeds``; variants compared by their test-accuracy gaps paired per seed (per
fold in leave-one-speaker-out) with a 95 % t interval, a difference claimed only where it excludes 0. One MLflow
run in the ``bench`` experiment with the tables as artifacts. ``--quick``: one seed, fewer epochs, official split.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F

from apps.spiking.data import fsdd_files
from apps.spiking.delays import DelayedLinear
from apps.spiking.encode import FILTERBANKS, GAINS
from core.datadir import DataError, data_dir
from pipelines.bench.sections import (add_common, check_sections, interleaved_ms, job_data, parse_quick, quiet,
                                      run_sections, train)
from pipelines.spiking import SpikingJob
from pipelines.bench.stats import paired_cell
from pipelines.bench.table import markdown, mean_std
from pipelines.runner import set_threads

SECTIONS = ("synthetic", "encoders", "delay_range", "fsdd", "speed")
VARIANTS = ("none", "random", "learned")
SYNTHETIC_MODEL = {"hidden": 48, "max_delay": 16}
SYNTHETIC_OPTIM = {"lr": 2e-3, "lr_positions": None}  # positions at 100 x lr  # on validation (hidden 24, seed 0): 1e-3 58.6, 2e-3 77.4, 5e-3 60.6 %


def train_once(dm, data: dict, seed: int, epochs: int, optim: dict | None = None, **model_kw) -> dict:
    """The job's training on data module ``dm`` (made from ``data``); the test is of the epoch with the best
    validation accuracy (integer delays, as tested). -> {test, val (%), params, s_per_epoch, best_epoch}."""
    out = train(SpikingJob(), {"seed": seed, "data": data, "model": model_kw, "optim": optim or {},
                               "trainer": {"max_epochs": epochs, "num_sanity_val_steps": 0}}, dm=dm)
    params = {k[len("params_"):]: int(v) for k, v in out.steps.items() if k.startswith("params_")}
    return {"test": 100 * out.metrics["test_acc"], "val": 100 * out.val, "params": params,
            "s_per_epoch": out.fit_seconds / epochs, "best_epoch": out.best_epoch}


def _runs(label: str, data: dict, seeds, epochs: int, variants=VARIANTS, optim: dict | None = None,
          **model_kw) -> dict:
    """variant -> [train_once(...) per seed], every training on the same data module."""
    dm = job_data(SpikingJob(), {"seed": 0, "data": data})  # data seed 0 (validation split, synthetic task)
    out = {v: [] for v in variants}
    for v in variants:
        for seed in seeds:
            r = train_once(dm, data, seed, epochs, optim, delays=v, **model_kw)
            out[v].append(r)
            print(f"  {label} {v} seed {seed}: val {r['val']:.1f}% test {r['test']:.1f}% (epoch {r['best_epoch']}, "
                  f"{r['s_per_epoch']:.1f} s/epoch)", flush=True)
    return out


HEAD = ["data", "delays", "seeds", "val acc %", "test acc %", "weights", "delay positions", "s / epoch"]


def _row(label: str, v: str, runs: list, n: str) -> list:
    p = runs[0]["params"]
    return [label, v, n, mean_std([r["val"] for r in runs], 1), mean_std([r["test"] for r in runs], 1),
            p["weights"], p["positions"], f"{statistics.mean(r['s_per_epoch'] for r in runs):.1f}"]


def _model_kw(a) -> dict:
    return {"hidden": a.hidden, "max_delay": a.max_delay}


def _optim(a) -> dict:
    return {"lr_positions": a.lr_positions}


def _fsdd(a, split: str, filterbank: str | None = None) -> dict:
    """The data options of FSDD on ``split``."""
    return {"source": "fsdd", "split": split, "batch_size": 64, "val_recordings": a.val_recordings,
            **({"encoder": {"filterbank": filterbank}} if filterbank else {})}


def _paired(label: str, runs: dict, n: str, unit: str = "seed") -> list[list]:
    """Rows learned - random and random - none: the test-accuracy gaps paired per ``unit`` (same seed, or same fold),
    their mean with its 95 % t interval and verdict, then each pair's gap."""
    rows = []
    for hi, lo in (("learned", "random"), ("random", "none")):
        gaps = [h["test"] - l["test"] for h, l in zip(runs[hi], runs[lo])]
        rows.append([label, f"{hi} - {lo}, paired per {unit}", n, "",
                     f"{paired_cell(gaps, 1)} ({' '.join(f'{g:+.1f}' for g in gaps)})", "", "", ""])
    return rows


def _fold_mean(runs: list[dict]) -> dict:
    """One fold's trainings (its seeds) -> their mean test / val accuracy and s / epoch, as one training's dict."""
    return {**runs[0], **{k: statistics.mean(r[k] for r in runs) for k in ("test", "val", "s_per_epoch")}}


def _loso(a) -> list[list]:
    """Leave one speaker out, every speaker in turn; fold k trains ``--fold-seeds`` seeds of ``--seeds`` (from the
    k-th on, cycling; all of them by default) and counts their mean. Rows: each variant, mean ± std over the folds,
    then the gaps paired per fold (learned - random, random - none)."""
    speakers = sorted({f[2] for f in fsdd_files(data_dir() / "audio" / "fsdd" / "recordings")})
    per_fold = a.fold_seeds or len(a.seeds)
    folds, used = {v: [] for v in VARIANTS}, set()
    for k, who in enumerate(speakers):
        seeds = [a.seeds[(k + j) % len(a.seeds)] for j in range(per_fold)]
        used.update(seeds)
        runs = _runs(f"FSDD speaker:{who}", _fsdd(a, f"speaker:{who}"), seeds, a.epochs, optim=_optim(a),
                     **_model_kw(a))
        for v in VARIANTS:
            folds[v].append(_fold_mean(runs[v]))
    n = f"{len(speakers)} folds x {per_fold} seed(s) of {','.join(map(str, sorted(used)))}"
    label = "FSDD leave-one-speaker-out"
    return [_row(label, v, folds[v], n) for v in VARIANTS] + _paired(label, folds, n, "fold")


def synthetic(a) -> str:
    runs = _runs("burst order", {"source": "synthetic", "batch_size": 64}, a.seeds, a.synthetic_epochs,
                 optim=SYNTHETIC_OPTIM, **SYNTHETIC_MODEL)
    label, n = "burst-order task (6 classes, chance 16.7)", str(len(a.seeds))
    return markdown(HEAD, [_row(label, v, runs[v], n) for v in VARIANTS] + _paired(label, runs, n))


def encoders(a) -> str:
    rows = []
    for name in FILTERBANKS:
        runs = _runs(f"FSDD official {name}", _fsdd(a, "official", name), a.seeds, a.epochs, ("learned",),
                     _optim(a), **_model_kw(a))
        rows.append(_row(f"FSDD official, {name} (gain {GAINS[name]:g})", "learned", runs["learned"],
                         str(len(a.seeds))))
    return markdown(HEAD, rows)


def delay_range(a) -> str:
    """Learned delays on the official split for each longest delay D in ``--max-delays``; the last column marks the
    one with the best mean validation accuracy (what ``--max-delay`` should then be)."""
    rows, val = [], {}
    for d in a.max_delays:
        runs = _runs(f"FSDD official D={d}", _fsdd(a, "official"), a.seeds, a.epochs, ("learned",), _optim(a),
                     **{**_model_kw(a), "max_delay": d})
        val[d] = statistics.mean(r["val"] for r in runs["learned"])
        rows.append(_row(f"FSDD official, D = {d} bins ({d * 20} ms)", "learned", runs["learned"], str(len(a.seeds))))
    best = max(val, key=val.get)
    return markdown(HEAD + ["chosen (best val)"],
                    [r + ["yes" if d == best else ""] for r, d in zip(rows, a.max_delays)])


def fsdd(a) -> str:
    rows = []
    for s in a.splits:
        if s == "loso":
            rows += _loso(a)
        else:
            runs = _runs(f"FSDD {s}", _fsdd(a, s), a.seeds, a.epochs, optim=_optim(a), **_model_kw(a))
            rows += [_row(f"FSDD {s}", v, runs[v], str(len(a.seeds))) for v in VARIANTS]
            rows += _paired(f"FSDD {s}", runs, str(len(a.seeds)))
    return markdown(HEAD, rows)


def speed(a) -> str:
    """Per step, the first hidden layer at FSDD size: x[T=40, B=64, 128] spikes -> ``--hidden``, D = ``--max-delay``."""
    t_len, b, c_in, c_out, d = 40, 64, 128, a.hidden, a.max_delay
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

    def dcls_form(inp):  # what the dcls package computes: the [out, in, D] kernel built, then a dense convolution
        return F.conv1d(F.pad(inp, (d - 1, 0)), ours.kernel().flip(-1))

    def train_dcls():
        ours.zero_grad()
        dcls_form(xb).square().mean().backward()

    with torch.no_grad():
        diff = (ours(x) - dcls_form(xb).permute(2, 0, 1)).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"the delay layer and its DCLS form differ by {diff:.2e}: not the same computation")

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
           "train dense hidden": lambda: train_dense(xbg), "infer dense": infer_dense, "infer integer 2": infer_rounded,
           "train ours 2": train_ours, "train dcls form": train_dcls}
    for f in fns.values():
        for _ in range(3):
            f()
    m = {}
    for pair in (("train ours", "train dense"), ("train ours hidden", "train dense hidden"),
                 ("infer training form", "infer integer delays"), ("infer dense", "infer integer 2"),
                 ("train ours 2", "train dcls form")):
        m.update(interleaved_ms({k: fns[k] for k in pair}, a.reps, warmup=0))  # both sides, the same load
    return markdown(["measure", "ours ms", "reference ms", "ratio ours / reference"], [
        ["training step (fwd+bwd), learned delays vs dense Conv1d with the full D-tap kernel",
         f"{m['train ours']:.1f}", f"{m['train dense']:.1f}", f"{m['train ours'] / m['train dense']:.2f}"],
        ["the same, input needs a gradient (a hidden layer)", f"{m['train ours hidden']:.1f}",
         f"{m['train dense hidden']:.1f}", f"{m['train ours hidden'] / m['train dense hidden']:.2f}"],
        ["training step, learned delays vs their DCLS form (the same Gaussian kernel built, then Conv1d; outputs "
         f"equal to {diff:.0e})", f"{m['train ours 2']:.1f}", f"{m['train dcls form']:.1f}",
         f"{m['train ours 2'] / m['train dcls form']:.2f}"],
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
    ap.add_argument("--epochs", type=int, default=30, help="FSDD epochs per training")
    ap.add_argument("--fold-seeds", type=int, default=None,
                    help="leave-one-speaker-out: seeds trained per fold (default: all of --seeds; 1 cycles them)")
    ap.add_argument("--synthetic-epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=48, help="FSDD hidden neurons per layer")
    ap.add_argument("--max-delay", type=int, default=13, help="FSDD longest delay, bins")
    ap.add_argument("--max-delays", nargs="+", type=int, default=[13, 25], help="delay_range's choices, bins")
    ap.add_argument("--val-recordings", type=int, default=5,
                    help="FSDD recordings per digit and speaker in validation (5: 300 clips on the official split)")
    ap.add_argument("--lr-positions", type=float, default=0.1, help="FSDD Adam lr of the delay positions (the job's)")
    add_common(ap, SECTIONS)
    a = parse_quick(ap, argv, seeds=[0], splits=["official"], epochs=2, synthetic_epochs=3, reps=5)
    return check_sections(ap, a, SECTIONS)


def main(argv: list[str]) -> int:
    a = parse(argv)
    quiet()
    threads = set_threads({"threads": a.threads})
    if {"fsdd", "encoders", "delay_range"} & set(a.sections):
        try:
            for s in a.splits:  # fail fast (a bad split or --val-recordings; fill the spike cache) before training
                job_data(SpikingJob(), {"seed": 0, "data": _fsdd(a, "official" if s == "loso" else s)})
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    params = {"sections": ",".join(a.sections), "seeds": ",".join(map(str, a.seeds)), "threads": threads,
              "splits": ",".join(a.splits), "epochs": a.epochs, "hidden": a.hidden, "max_delay": a.max_delay,
              "max_delays": ",".join(map(str, a.max_delays)), "val_recordings": a.val_recordings,
              "lr_positions": a.lr_positions, "fold_seeds": a.fold_seeds or len(a.seeds),
              "synthetic_epochs": a.synthetic_epochs}
    return run_sections("spiking", a, {s: globals()[s] for s in SECTIONS}, params)

"""``python -m pipelines.bench ais``: vessel-position forecasting over grouped vessel folds, and ingest speed.

Sections:
- ``folds``: every model and baseline on the same test windows of each of 5 grouped vessel folds (md5 of the MMSI;
  every vessel tested once), over seeds; per horizon the mean / median haversine error, the change relative to
  dead reckoning on the same windows (mean ± std over folds) and the RPD (predict-zero = 200 %). Models are
  trained by the runner's own code path (best validation epoch), without MLflow logging per model.
  ``--ensemble`` adds each model's seed ensemble: the mean of its seeds' predicted displacements, scored alike.
  The Kalman CV and CTRV filters' noise levels are chosen on each fold's validation vessels.
- ``paired``: the same trainings pooled over the folds (every vessel tested once): per horizon, each method's change
  vs dead reckoning on the same windows with a 95 % interval from a bootstrap over vessels (windows of one vessel
  are resampled together), the vessel-weighted change (each vessel counts once), and the change on turning and on
  straight windows (turning: the true position at the longest horizon lies more than 10 degrees off the last
  COG). A learned model's per-window error is the mean over its seeds.
- ``lengths``: the paper's comparison by sequence length (its Table: short / medium / long message sequences):
  every learned model on the same folds with windows of ``--lookbacks`` reports; per length, the error at the
  longest horizon, its change vs dead reckoning on the same windows, and the RPD. Windows need ``L`` reports of
  history, so each length has its own (nested) window set; compare models within a length.
- ``scale``: the DMA log repeated into logs of ``--scale-mb`` megabytes (copy k shifted by k x 5 minutes, so a
  vessel's track runs on; the ids stay, as re-encoding every payload would dominate the build), each read file ->
  clean tracks by ours and decoded by pyais in fresh processes: time, the ratio, our peak resident memory and its
  growth per million reports (memory follows the reports kept; the text is streamed).
- ``ingest``: messages per second, file -> clean tracks (ours: read + decode position reports + clean) against
  pyais's own stream reader decoding every message of the same file, interleaved in one process, after checking
  that both see the same number of messages; peak memory of ours (tracemalloc).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from apps.ais.data import resolve_paths
from apps.ais.models import WIDE
from pipelines.ais import AISJob
from pipelines.outcome import Predictions
from pipelines.bench.sections import add_common, bench_main, check_sections, job_data, parse_quick, train
from pipelines.bench.ais_ingest import ingest, scale  # noqa: F401 (sections, looked up by name)
from pipelines.bench.stats import ratio_interval
from pipelines.bench.table import markdown, mean_std
from apps.ais.baselines import baselines
from apps.ais.metrics import position_errors

SECTIONS = ("folds", "paired", "lengths", "scale", "ingest")
TURNING_DEG = 10.0


def _recipe(a, name: str) -> tuple[dict, float]:
    """(model options, learning rate) of model ``name`` under ``--recipe``: the job's defaults or ``WIDE``."""
    if a.recipe == "wide":
        return (WIDE["model"] if name == "spadon" else {}), WIDE["lr"]
    return {}, AISJob.defaults["optim"]["lr"]


def _history(a) -> int:
    """Reports the models see in ``folds`` (``lengths`` compares window lengths, so there it is the window's L):
    ``--history``, else the recipe's."""
    if a.history is not None:
        return a.history
    return WIDE["history"] if a.recipe == "wide" else AISJob.defaults["data"]["history"]


def _data_options(a, lookback: int, history: int, fold: int) -> dict:
    return {"split": f"vessel:{fold}", "horizons": a.horizons, "base": a.base, "lookback": lookback,
            "history": history, "mirror": a.mirror}


def _train(a, dm, data: dict, name: str, seed: int) -> tuple[dict, dict]:
    """The job's training of model ``name`` (the recipe's options, ``--members``, ``--loss``; no early stopping, the
    best validation epoch tested) on data module ``dm`` -> (its test metrics with ``val_mean_m``, its displacement
    predictions {"val", "test"} [W, H, 2] in window order)."""
    kw, lr = _recipe(a, name)
    out = train(AISJob(), {"seed": seed, "data": data, "model": {"name": name, "members": a.members, **kw},
                           "optim": {"lr": lr, "loss": a.loss}, "trainer": {"max_epochs": a.epochs, "patience": 0}},
                dm=dm)
    return out.metrics, {k: p.in_order() for k, p in out.predictions.items()}


def _ensemble(dm, preds: list[dict]) -> dict:
    """Metrics of the mean of several models' displacement predictions (a deep ensemble over seeds), scored as the
    job scores one model (``AISJob.evaluate``: test metrics on the same windows, ``val_mean_m``)."""
    mean = {k: np.mean([p[k] for p in preds], axis=0) for k in ("val", "test")}
    return AISJob().evaluate(dm, {k: Predictions(np.arange(len(v)), v) for k, v in mean.items()}, {})


def _fold_runs(a, lookback: int, history: int) -> tuple[dict, list]:
    """Train every model on every fold (and seed) -> ({model: {metric: [(fold, value)]}}, [(windows, vessels)]);
    once per (lookback, history) and process. The per-window errors go to ``a.windows[(lookback, history)]``."""
    cache = a.__dict__.setdefault("fold_runs", {})
    if (lookback, history) not in cache:
        cache[lookback, history] = _train_folds(a, lookback, history)
    return cache[lookback, history]


def _train_folds(a, lookback: int, history: int) -> tuple[dict, list]:
    per: dict[str, dict[str, list]] = {}
    counts = []
    windows = a.__dict__.setdefault("windows", {}).setdefault((lookback, history), [])
    for k in a.folds:
        data = _data_options(a, lookback, history, k)
        dm = job_data(AISJob(), {"data": data, "model": {"members": a.members}})
        s = dm.sets["test"]
        counts.append((len(s["x"]), len(np.unique(s["mmsi"]))))
        err = lambda d: position_errors(d, s["lat0"], s["lon0"], s["true_lat"], s["true_lon"])  # noqa: E731
        off = np.rad2deg(np.arctan2(s["true_en"][:, -1, 0], s["true_en"][:, -1, 1])) - s["cog0"]
        fold = {"mmsi": s["mmsi"], "turning": np.abs((off + 180) % 360 - 180) > TURNING_DEG,
                "err": {n: err(d) for n, d in baselines(s, dm.horizons, dm.turn_tau, dm.kalman).items()}}
        windows.append(fold)
        for name in a.models:
            preds = []
            for seed in a.seeds:
                m, p = _train(a, dm, data, name, seed)
                preds.append(p)
                for key, v in m.items():
                    per.setdefault(name, {}).setdefault(key, []).append((k, v))
            fold["err"][name] = np.mean([err(p["test"]) for p in preds], axis=0)
            if a.ensemble and len(preds) > 1:
                for key, v in _ensemble(dm, preds).items():
                    per.setdefault(_ens(name, a), {}).setdefault(key, []).append((k, v))
                fold["err"][_ens(name, a)] = err(np.mean([p["test"] for p in preds], axis=0))
        last = f"test_mean_m_{a.horizons[-1]}s"
        got = ", ".join(f"{n} {statistics.mean(v for f, v in per[n][last] if f == k):.1f}" for n in per)
        dr = m[f"dr_mean_m_{a.horizons[-1]}s"]
        print(f"L={lookback} history={history} fold {k}: {got}, DR {dr:.1f} m", flush=True)
    return per, counts


def _ens(name: str, a) -> str:
    return f"{name}, mean of the {len(a.seeds)} seeds' predictions"


def _learned(a, per: dict) -> list[str]:
    """The learned rows: each model, then its seed ensemble (``--ensemble``)."""
    return [n for m in a.models for n in (m, _ens(m, a)) if n in per]


def folds(a) -> str:
    per, counts = _fold_runs(a, 10, _history(a))
    rows = []
    ref = per[a.models[0]]
    for label, key in BASELINES:
        rows.append([label] + [_cell(ref, f"{key}_mean_m_{h}s", ref, h, key) for h in a.horizons]
                    + [mean_std([v for _, v in ref[f"dr_rpd_{a.horizons[-1]}s"]], 1) if key == "dr" else "-"])
    for name in _learned(a, per):
        rows.append([name] + [_cell(per[name], f"test_mean_m_{h}s", per[name], h, "test") for h in a.horizons]
                    + [mean_std([v for _, v in per[name][f"test_rpd_{a.horizons[-1]}s"]], 1),
                       f"{statistics.mean(v for _, v in per[name]['val_mean_m']):.2f}"])
    rows[:len(BASELINES)] = [r + ["-"] for r in rows[:len(BASELINES)]]
    head = ["method"] + [f"+{h} s mean m (vs DR)" for h in a.horizons] + [f"RPD +{a.horizons[-1]} s %",
                                                                          "val mean m (choice)"]
    n_w, n_v = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return (markdown(head, rows) + f"\n\nTest windows over the folds: {n_w} from {n_v} vessels "
            f"({', '.join(f'{w}/{v}' for w, v in counts)} per fold); seeds {a.seeds}; {a.epochs} epochs max, "
            f"best validation epoch; predict-zero RPD = 200 %; recipe {a.recipe} (the models see up to "
            f"{_history(a)} reports); "
            + (f"each learned model an ensemble of {a.members} (one run, members trained as if separately); "
               if a.members > 1 else "") +
            f"the learned models correct "
            f"{'dead reckoning' if a.base == 'dr' else 'the damped turn'}; training loss {a.loss}, "
            f"{'with' if a.mirror else 'without'} mirrored windows; val mean m: the validation error (all horizons) "
            f"of the chosen epochs, mean over folds and seeds, what training choices are made on"
            + ("; a seed-ensemble row averages the seeds' predicted displacements per window (one ensemble per "
               "fold, so its ± is over folds only)." if a.ensemble else "."))


BASELINES = (("dead reckoning", "dr"), ("last position", "last"), ("constant velocity, last two fixes", "cv"),
             ("damped turn (tau chosen on val)", "turn"), ("Kalman CV (tuned on val)", "kalman_cv"),
             ("Kalman CTRV (tuned on val)", "kalman_ctrv"))


def paired(a) -> str:
    """The ``folds`` trainings pooled over folds: change vs dead reckoning with 95 % intervals over vessels."""
    _fold_runs(a, 10, _history(a))
    ws = a.windows[10, _history(a)]
    mmsi, turning = np.concatenate([w["mmsi"] for w in ws]), np.concatenate([w["turning"] for w in ws])
    methods = [m for m in ws[0]["err"] if m not in ("dr", "last", "cv")]
    err = {m: np.concatenate([w["err"][m] for w in ws]) for m in ["dr", *methods]}
    rows = []
    for m in methods:
        row = [dict((k, lab) for lab, k in BASELINES).get(m, m)]
        for i, h in enumerate(a.horizons):
            est, lo, hi = ratio_interval(err[m][:, i], err["dr"][:, i], mmsi)
            row.append(f"{err[m][:, i].mean():.1f} ({est:+.1f} % [{lo:+.1f}, {hi:+.1f}])")
        i = len(a.horizons) - 1
        vw = ratio_interval(err[m][:, i], err["dr"][:, i], mmsi, weight="group")
        row.append(f"{vw[0]:+.1f} % [{vw[1]:+.1f}, {vw[2]:+.1f}]")
        for part in (turning, ~turning):
            e = ratio_interval(err[m][part, i], err["dr"][part, i], mmsi[part])
            row.append(f"{e[0]:+.1f} % [{e[1]:+.1f}, {e[2]:+.1f}]")
        rows.append(row)
    # each learned model against the stronger Kalman filter (lower pooled error, chosen on test: the choice can only
    # favour the filter), paired on the same windows
    kal = min(("kalman_cv", "kalman_ctrv"), key=lambda k: err[k].mean())
    versus = []
    for m in (m for m in methods if not m.startswith(("kalman", "turn"))):
        cells = []
        for i, x in enumerate(a.horizons):
            est, lo, hi = ratio_interval(err[m][:, i], err[kal][:, i], mmsi)
            cells.append(f"+{x} s {est:+.1f} % [{lo:+.1f}, {hi:+.1f}]")
        versus.append(f"{m} against {dict((k, lab) for lab, k in BASELINES)[kal]}: " + ", ".join(cells))
    h = a.horizons[-1]
    head = (["method"] + [f"+{x} s mean m (vs DR, 95 % CI)" for x in a.horizons]
            + [f"+{h} s vessel-weighted", f"+{h} s turning", f"+{h} s straight"])
    dr = ", ".join(f"+{x} s {err['dr'][:, i].mean():.1f} m" for i, x in enumerate(a.horizons))
    return (markdown(head, rows) + f"\n\nPooled over folds {a.folds}: {len(mmsi)} test windows from "
            f"{len(np.unique(mmsi))} vessels ({turning.sum()} turning: the true +{h} s position more than "
            f"{TURNING_DEG:g} degrees off the last COG); dead reckoning {dr}. Intervals: 2,000 bootstrap resamples "
            f"of vessels (a vessel's windows together), percentile 95 %; a learned model's window error is the mean "
            f"over seeds {a.seeds}; baselines' constants chosen on each fold's validation vessels.\n\n"
            + "\n".join(f"- {v}" for v in versus))


def lengths(a) -> str:
    h = a.horizons[-1]
    rows, notes = [], []
    for L in a.lookbacks:
        per, counts = _fold_runs(a, L, L)
        ref = per[a.models[0]]
        rows.append([L, "dead reckoning", _cell(ref, f"dr_mean_m_{h}s", ref, h, "dr"),
                     mean_std([v for _, v in ref[f"dr_rpd_{h}s"]], 1)])
        for name in _learned(a, per):
            rows.append([L, name, _cell(per[name], f"test_mean_m_{h}s", per[name], h, "test"),
                         mean_std([v for _, v in per[name][f"test_rpd_{h}s"]], 1)])
        notes.append(f"L = {L}: {sum(c[0] for c in counts)} windows from {sum(c[1] for c in counts)} vessels")
    return (markdown(["reports per window (L)", "method", f"+{h} s mean m (vs DR)", f"RPD +{h} s %"], rows)
            + f"\n\nTest windows over folds {a.folds}: " + "; ".join(notes) + f"; seeds {a.seeds}; {a.epochs} "
            "epochs max, best validation epoch; the paper's RPD (its model / Elman RNN / GRU / LSTM) is 36 / 92 / 51 "
            "/ 129 % on short, 37 / 45 / 52 / 98 % on medium and 38 / 96 / 40 / 61 % on long sequences.")


def _cell(d: dict, key: str, same: dict, h: int, who: str) -> str:
    """mean over folds (of the seed mean) and the change vs dead reckoning on the same windows, mean ± std."""
    by_fold: dict[int, list] = {}
    for f, v in d[key]:
        by_fold.setdefault(f, []).append(v)
    dr: dict[int, list] = {}
    for f, v in same[f"dr_mean_m_{h}s"]:
        dr.setdefault(f, []).append(v)
    means = [statistics.mean(v) for v in by_fold.values()]
    rel = [100 * (statistics.mean(by_fold[f]) / statistics.mean(dr[f]) - 1) for f in by_fold]
    return f"{statistics.mean(means):.1f} ({mean_std(rel, 1)} %)" if who != "dr" else f"{statistics.mean(means):.1f}"


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench ais", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 folds, 1 seed, spadon and gru, 3 epochs, 2 repetitions")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["spadon", "rnn", "gru", "lstm", "transformer"])
    ap.add_argument("--horizons", nargs="+", type=int, default=[30, 60, 120])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--base", choices=("dr", "turn"), default="dr", help="what the learned models correct")
    ap.add_argument("--loss", choices=("norm", "huber"), default="norm", help="the learned models' training loss")
    ap.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True,
                    help="train on mirrored windows too")
    ap.add_argument("--members", type=int, default=1, help="each learned model an ensemble of this many (the job's "
                    "--model.members; the job's default is 3, the bench's 1 keeps the paper's single models)")
    ap.add_argument("--recipe", choices=("default", "wide"), default="default",
                    help="default: the job's (narrow spadon, lr 1e-3, history 20 reports); wide: the earlier default "
                    "(spadon 64 wide, 2 LSTM layers, dropout 0.1, lr 2e-3, history = lookback), as in older tables")
    ap.add_argument("--history", type=int, default=None,
                    help="reports of history the models see in folds (default: the recipe's; at least the window's 10)")
    ap.add_argument("--ensemble", action="store_true",
                    help="also score each model's seed ensemble (the mean of its seeds' predictions) as a row")
    ap.add_argument("--lookbacks", nargs="+", type=int, default=[5, 10, 20], help="window lengths (reports), lengths")
    ap.add_argument("--scale-mb", nargs="+", type=float, default=[30, 300],
                    help="scale: sizes of the repeated log in MB (2,000 makes a multi-gigabyte, multi-hour run)")
    add_common(ap, SECTIONS)
    a = parse_quick(ap, argv, folds=[0, 1], seeds=[0], models=["spadon", "gru"], epochs=3, lookbacks=[5, 20],
                    reps=2, scale_mb=[3, 6])
    return check_sections(ap, a, SECTIONS)


def main(argv: list[str]) -> int:
    a = parse(argv)
    params = {"sections": ",".join(a.sections), "folds": ",".join(map(str, a.folds)),
              "seeds": ",".join(map(str, a.seeds)), "models": ",".join(a.models), "epochs": a.epochs, "base": a.base,
              "loss": a.loss, "mirror": a.mirror, "ensemble": a.ensemble, "members": a.members, "recipe": a.recipe,
              "history": _history(a), "lookbacks": ",".join(map(str, a.lookbacks)),
              "scale_mb": ",".join(f"{m:g}" for m in a.scale_mb)}
    return bench_main("ais", a, {s: globals()[s] for s in SECTIONS}, lambda: resolve_paths(None), params)

"""``python -m pipelines.bench traffic``: flow classification on nDPI's captures, honestly split, and parse speed.

Sections (each model trained by the job's own code path, best validation epoch, no MLflow run per model):
- ``folds``: GBM on flow statistics, the hierarchical model from scratch, and pretrained (masked field
  prediction on the training captures' flows and every unlabelled capture here) + fine-tuned; 5 folds grouped by
  capture, shortcuts masked; macro-F1 and accuracy, mean ± std over folds (each the mean of ``--seeds``), and
  the paired differences between methods with their 95 % intervals over folds.
- ``shortcuts``: the same with every shortcut field unmasked (ports, TTL, IP ID, sequence numbers, TCP
  timestamps), and with ports alone; the drop from unmasked to masked per method.
- ``leaky``: the same folds made over flows, ignoring captures (the leaky control); the drop to grouped.
- ``labels``: label efficiency: ``--fractions`` (1 / 10 %) and 100 % of the training flows' labels (pretraining
  sees all flows), with pretrained - scratch and pretrained - GBM paired at each fraction.
- ``captures``: the capture-level task: Zeek's protocol test traces, label = protocol folder, a capture's label
  from the mean of its flows' probabilities; the same three methods, folds grouped by capture, shortcuts masked.
- ``parse``: captures -> flows for every capture under ``traffic/`` against dpkt's own object decoding
  (``dpkt.pcap.Reader`` / ``dpkt.pcapng.Reader`` + the link layer's class, as dpkt users write it) of the same
  files, interleaved in one process after checking that both count the same packets; and the reader's peak
  Python memory (tracemalloc) on the smallest and the largest capture.
"""
from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from apps.traffic.data import resolve_captures
from apps.traffic.features import SHORTCUTS
from apps.traffic.flows import read_capture
from apps.traffic.pcap import CaptureStats, read_packets, sniff
from core.datadir import DataError, data_dir
from pipelines.bench.sections import add_common, bench_main, check_sections, job_data, parse_quick, train
from pipelines.traffic import TrafficJob
from pipelines.bench.stats import paired_cell
from pipelines.bench.table import markdown, mean_std

SECTIONS = ("folds", "shortcuts", "leaky", "labels", "captures", "parse")
PRE, SCRATCH, GBM = "netFound, pretrained", "netFound, scratch", "GBM (flow statistics)"
MAJORITY = "majority class (floor)"


def _train(a, dm, data: dict, pretrain_epochs: int, seed: int, reference: bool = False):
    """The job's training (masked pretraining for ``pretrain_epochs``, then fine-tuning; the best validation epoch
    tested, ``--epochs`` at most, no early stopping) on data module ``dm`` -> its Outcome."""
    return train(a.job, {"seed": seed, "data": data, "model": {"pretrain_epochs": pretrain_epochs},
                         "trainer": {"max_epochs": a.epochs, "patience": 0}}, dm=dm, reference=reference)


def _scores(m: dict, prefix: str = "test_") -> dict:
    return {"macro_f1": m[f"{prefix}macro_f1"], "acc": m[f"{prefix}acc"]}


def _methods(a, pretrained: bool = True, **data_kw) -> dict[str, list[dict]]:
    """method -> one score dict per fold (seed-averaged); the GBM and the majority floor are the job's references
    on the same test units."""
    out: dict[str, list[dict]] = {GBM: [], SCRATCH: []}
    if pretrained:
        out[PRE] = []
    for k in a.folds:
        data = {**data_kw, "split": f"{data_kw.get('split', 'group')}:{k}"}
        dm = job_data(a.job, {"data": data})
        gbm = None
        for name, pre in ((SCRATCH, 0), (PRE, a.pretrain_epochs))[:1 + pretrained]:
            runs = []
            for seed in a.seeds:
                runs.append(_train(a, dm, data, pre, seed, reference=gbm is None))
                gbm = gbm or runs[-1].reference
            out[name].append({m: statistics.mean(_scores(r.metrics)[m] for r in runs) for m in ("macro_f1", "acc")})
        out[GBM].append(_scores(gbm, "gbm_"))
        out.setdefault(MAJORITY, []).append(_scores(gbm, "floor_majority_"))
        print(f"fold {k} {data_kw}: " + ", ".join(f"{n} {v[-1]['macro_f1']:.3f}" for n, v in out.items()),
              flush=True)
    return out


def _grouped(a, pretrained: bool) -> dict[str, list[dict]]:
    """The grouped, masked results, computed once per process (with the pretrained model if any section asked)."""
    if "group" not in a.cache or (pretrained and PRE not in a.cache["group"]):
        a.cache["group"] = _methods(a, pretrained)
    return a.cache["group"]


def _f1(runs: list[dict], key: str = "macro_f1") -> str:
    return mean_std([r[key] for r in runs], 3)


def _gain(x: list[dict], y: list[dict], key: str = "macro_f1") -> list[float]:
    """x - y per fold (each fold the mean of its seeds)."""
    return [p[key] - q[key] for p, q in zip(x, y)]


def _paired(res: dict[str, list[dict]], a_name: str, b_name: str, key: str = "macro_f1") -> str:
    """a - b per fold (each fold the mean of its seeds: a fold's seeds share its test flows, so the fold is the
    unit), mean and 95 % t interval over folds, and what the interval says."""
    return paired_cell(_gain(res[a_name], res[b_name], key))


def folds(a) -> str:
    res = _grouped(a, True)
    rows = [[n, _f1(r), _f1(r, "acc")] for n, r in res.items()]
    table = markdown(["method (grouped folds, shortcuts masked)", "macro-F1", "accuracy"], rows)
    pairs = markdown(["paired comparison (macro-F1)", "mean difference [95 % CI] over folds"],
                     [[f"{x} - {y}", _paired(res, x, y)] for x, y in ((PRE, SCRATCH), (PRE, GBM), (SCRATCH, GBM))])
    return table + "\n\n" + pairs + _note(a)


def _control(a, variants: dict[str, dict[str, list[dict]]], base: str) -> str:
    """Per method: each variant's macro-F1, and what each variant adds over ``base`` (paired per fold, 95 % CI);
    then whether the models gain less from it than the GBM (their gain - the GBM's gain, paired per fold)."""
    ref = variants[base]
    others = [v for v in variants if v != base]
    rows = [[n] + [_f1(variants[v][n]) for v in variants] + [paired_cell(_gain(variants[v][n], ref[n]))
                                                             for v in others] for n in variants[others[0]]]
    head = ["method"] + list(variants) + [f"{v} - {base} (paired, 95 % CI)" for v in others]
    gbm = [[f"{n} - GBM: gain from {v}"] + [paired_cell(np.subtract(_gain(variants[v][n], ref[n]),
                                                                     _gain(variants[v][GBM], ref[GBM])),
                                                        below="gains less", above="gains more")]
           for v in others for n in variants[v] if n not in (GBM, MAJORITY)]
    return (markdown(head, rows) + "\n\n" + markdown(["difference of gains (macro-F1)", "mean [95 % CI] over folds"],
                                                       gbm) + _note(a))


def shortcuts(a) -> str:
    """The shortcut control: the grouped folds with the ports, and with every shortcut field, left visible."""
    return _control(a, {"masked": _grouped(a, a.pretrained_controls),
                        "ports unmasked": _methods(a, a.pretrained_controls, unmask=["ports"]),
                        "all unmasked": _methods(a, a.pretrained_controls, unmask=list(SHORTCUTS))}, "masked")


def leaky(a) -> str:
    """The leaky-split control: the same classes and shortcuts masked, folds made over flows instead of captures."""
    return _control(a, {"grouped by capture": _grouped(a, a.pretrained_controls),
                        "leaky (folds over flows)": _methods(a, a.pretrained_controls, split="leaky")},
                    "grouped by capture")


def labels(a) -> str:
    """Label efficiency: ``--fractions`` of the training flows' labels (pretraining sees every unlabelled flow), and
    100 % (the folds section's cells); pretrained - scratch and pretrained - GBM paired per fold at each."""
    fr = {frac: _methods(a, label_fraction=frac) for frac in a.fractions}
    fr[1.0] = _grouped(a, True)
    head = [f"{100 * f:g} % labels" for f in fr]
    rows = [[n] + [_f1(fr[f][n]) for f in fr] for n in fr[1.0]]
    rows += [[f"{x} - {y} (paired, 95 % CI)"] + [_paired(fr[f], x, y) for f in fr] for x, y in ((PRE, SCRATCH),
                                                                                               (PRE, GBM))]
    return markdown(["method (macro-F1)"] + head, rows) + _note(a)


def captures(a) -> str:
    res = _methods(a, True, path=str(data_dir() / "traffic" / "zeek"), labels="folders", level="capture")
    rows = [[n, _f1(r), _f1(r, "acc")] for n, r in res.items()]
    pairs = [[f"{x} - {y} ({name})", _paired(res, x, y, key)] for key, name in (("macro_f1", "macro-F1"),
                                                                                 ("acc", "accuracy"))
             for x, y in ((PRE, SCRATCH), (PRE, GBM), (PRE, MAJORITY), (GBM, MAJORITY))]
    return markdown(["method (Zeek traces, per capture, grouped folds)", "macro-F1", "accuracy"], rows) + "\n\n" + \
        markdown(["paired comparison", "mean difference [95 % CI] over folds"], pairs) + (
        f"\n\nmacro-F1 / accuracy per capture (the argmax of its flows' mean probabilities; its label is the "
        f"protocol folder), mean ± std over folds {a.folds}, seeds {a.seeds}; every protocol folder with >= 5 "
        f"captures, <= 50 flows per capture; {a.epochs} epochs max (best validation macro-F1), pretraining {a.pretrain_epochs} epochs.")


def _note(a) -> str:
    return (f"\n\nmacro-F1 / accuracy per flow, mean ± std over folds {a.folds} (each fold the mean of seeds "
            f"{a.seeds}); nDPI's master_proto labels with DPI confidence, the 7 largest classes in >= 5 captures, "
            f"<= 50 flows per capture and class; {a.epochs} epochs max (best validation macro-F1), pretraining "
            f"{a.pretrain_epochs} epochs on the training captures' flows and every unlabelled capture here (Zeek, "
            f"nPrint, Stratosphere). Paired differences: per fold (the mean of its seeds), t interval over folds.")


def _dpkt_count(files: list[Path]) -> int:
    """dpkt's own decoding of every packet: reader by magic bytes, then the link layer's class."""
    import dpkt

    link = {1: dpkt.ethernet.Ethernet, 113: dpkt.sll.SLL, 276: dpkt.sll2.SLL2, 0: dpkt.loopback.Loopback,
            108: dpkt.loopback.Loopback, 9: dpkt.ppp.PPP}
    n = 0
    for f in files:
        try:
            kind = sniff(f)
        except DataError:
            continue
        with open(f, "rb") as fh:
            try:
                r = dpkt.pcapng.Reader(fh) if kind == "pcapng" else dpkt.pcap.Reader(fh)
                dl = r.datalink()
                cls = link.get(dl, dpkt.ip.IP if dl in (101, 12, 14, 228) else dpkt.ip6.IP6 if dl == 229 else None)
                for _ts, buf in r:
                    n += 1
                    if cls is not None:
                        try:
                            cls(buf)
                        except (dpkt.UnpackError, IndexError, ValueError, KeyError):
                            pass
            except (ValueError, dpkt.NeedData, dpkt.UnpackError):
                continue
    return n


def _ours_count(files: list[Path]) -> tuple[int, int]:
    st = CaptureStats()
    flows = 0
    for f in files:
        try:
            flows += len(read_capture(f, stats=st))
        except DataError:
            continue
    c = st.counts
    # records: decoded or skipped packets, and records cut short by the end of the file (dpkt returns those short)
    return sum(c[k] for k in ("packets", "non_ip", "fragment", "truncated", "unknown_link", "corrupt_records",
                              "truncated_records")), flows


def _repeat_capture(src: Path, dst: Path, size: int) -> Path:
    """A classic pcap of at least ``size`` bytes: ``src``'s records written again and again."""
    recs = [(ts, d) for ts, _, d in read_packets(src)]
    with open(src, "rb") as f:
        head = f.read(24)
    order = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    unit = 1e-9 if head[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    with open(dst, "wb") as f:
        f.write(head)
        n = 24
        while n < size:
            for ts, d in recs:
                f.write(struct.pack(order + "IIII", int(ts), int(round((ts % 1) / unit)), len(d), len(d)) + d)
                n += 16 + len(d)
    return dst


def parse(a) -> str:
    files, _ = resolve_captures(str(data_dir() / "traffic"))
    size = sum(f.stat().st_size for f in files)
    n_ours, n_flows = _ours_count(files)
    n_ref = _dpkt_count(files)
    if n_ours != n_ref:
        raise RuntimeError(f"ours read {n_ours} packets, dpkt {n_ref}: not the same work")
    t_ours, t_ref = [], []
    for _ in range(a.reps):
        t = time.perf_counter()
        _ours_count(files)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        _dpkt_count(files)
        t_ref.append(time.perf_counter() - t)
    o, r = statistics.median(t_ours), statistics.median(t_ref)
    mem = []
    with tempfile.TemporaryDirectory() as d:
        big = _repeat_capture(max((f for f in files if sniff(f) == "pcap"), key=lambda p: p.stat().st_size),
                              Path(d) / "big.pcap", 64 * 2 ** 20)
        for f in (min(files, key=lambda p: p.stat().st_size), max(files, key=lambda p: p.stat().st_size), big):
            tracemalloc.start()
            for _ in read_packets(f):
                pass
            mem.append((f.name, f.stat().st_size / 2 ** 20, tracemalloc.get_traced_memory()[1] / 2 ** 20))
            tracemalloc.stop()
    table = markdown(["reader", "packets", "seconds (median)", "packets / s", "time vs dpkt"],
                     [["dpkt: Reader + link-layer objects", n_ref, f"{r:.2f}", f"{n_ref / r:,.0f}", "1.00"],
                      ["ours: captures -> flows", n_ours, f"{o:.2f}", f"{n_ours / o:,.0f}", f"{o / r:.2f}"]])
    return (table + f"\n\n{len(files)} capture files, {size / 2 ** 20:.1f} MB, {n_flows} flows; {a.reps} "
            f"interleaved repetitions. Peak Python memory of the streaming reader: "
            + "; ".join(f"{n} ({s:.2f} MB file) {m:.2f} MB" for n, s, m in mem) + ".")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench traffic", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 folds, 1 seed, 3 epochs, 1 pretraining epoch, 1 rep")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--pretrain_epochs", type=int, default=3)
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1],
                    help="labels section: label fractions besides 100 %%")
    ap.add_argument("--pretrained_controls", action="store_true",
                    help="also run the pretrained model in the shortcuts and leaky controls (about 2x their time)")
    add_common(ap, SECTIONS, reps=3)
    a = parse_quick(ap, argv, folds=ap.get_default("folds")[:2], seeds=ap.get_default("seeds")[:1], epochs=3,
                    pretrain_epochs=1, reps=1, fractions=[0.1])
    a.cache = {}
    a.job = TrafficJob(cache={})  # the captures are read once per process, for every fold and control
    return check_sections(ap, a, SECTIONS)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    params = {"sections": ",".join(a.sections), "folds": ",".join(map(str, a.folds)),
              "seeds": ",".join(map(str, a.seeds)), "epochs": a.epochs, "pretrain_epochs": a.pretrain_epochs}
    return bench_main("traffic", a, {s: globals()[s] for s in SECTIONS}, lambda: resolve_captures(None), params)

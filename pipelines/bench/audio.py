"""``python -m pipelines.bench audio``: how the audio enters the LM (PAL, arXiv 2506.10423), on the FSDD question set.

Sections (every model trained by the job's code path -- stage 0 with the oracle, stage 1 connectors only, stage 2
everything -- and tested at its best validation epoch; no MLflow run per model):
- ``integration``: PLITS, delayed PLITS, LAL, delayed LAL, PAL, PAL's parameter-matched control (its summary
  tokens by LAL), gated cross-attention, and the floors: the same LM trained on the questions alone (never any
  audio) and the per-type majority answer; test accuracy per question type and its macro mean, the blind score
  (the trained model with the audio removed), the rephrased templates, trained parameters; mean ± std over seeds,
  and each of the paper's claims answered from a paired interval.
- ``encoders``: LAL on each encoder alone and on all of them together (the ensemble), paired against each single
  encoder; the trained parameters are printed (an ensemble has one connector per encoder).
- ``speakers``: leave one speaker out, for each of the six speakers: LAL, PLITS and the majority floor.
``--lm hf:PATH`` runs integration, encoders and speakers on a local pretrained LM (frozen); probes and cost use the
LM built here.
- ``probes``: PLITS and LAL (first seed): per layer, linear-probe test accuracy of digit, speaker and loudness
  from the text state at ``<ans>``, and the share of that query's attention on audio keys; a figure on the run.
- ``cost``: one training step (forward + backward) of the job's LM for PLITS, LAL and PAL at 32, 128 and 512 audio
  tokens and 12 text tokens, batch 16, interleaved in one process after a warm-up; memory = bytes of the tensors
  autograd saves for the backward pass (the activations, which set a training step's peak).
"""
from __future__ import annotations

import argparse

import torch

from apps.audio.data import AudioQA
from apps.audio.models import AudioLM
from apps.audio.questions import SPEAKERS, TYPES
from apps.audio.task import majority_floor
from core.datadir import data_dir, fsdd_files
from pipelines.audio import AudioJob
from pipelines.bench.sections import (add_common, bench_main, check_sections, interleaved_ms, job_data,
                                      parse_quick, train)
from pipelines.bench.stats import paired_cell
from pipelines.bench.table import markdown, mean_std

SECTIONS = ("integration", "encoders", "speakers", "probes", "cost")
TEXT_ONLY, MATCHED = "text only (never hears audio)", "LAL + PAL's summary by LAL (PAL's parameters)"
METHODS = {"PLITS": {"integration": "plits"}, "PLITS, delayed (layer 2)": {"integration": "plits", "start": 2},
           "LAL": {"integration": "lal"}, "LAL, delayed (layer 2)": {"integration": "lal", "start": 2},
           "PAL": {"integration": "pal"}, MATCHED: {"integration": "lal_summary"},
           "gated cross-attention": {"integration": "xattn"}, TEXT_ONLY: {"integration": "lal", "text_only": True}}


def _key(model: dict) -> str:
    """--methods name of a METHODS row: plits, plits_delayed, lal, ..., text_only."""
    return "text_only" if model.get("text_only") else model["integration"] + ("_delayed" if model.get("start") else "")


def _model_options(a) -> dict:
    return {"lm": a.lm} if a.lm != "scratch" else {"dim": a.dim}


def train_and_test(dm: AudioQA, a, seed: int, keep: list | None = None, **model_kw) -> dict:
    """The job's three stages on ``dm`` (``--stage_epochs``, no early stopping); -> test metrics of the best
    validation epoch and ``params``, the parameters that train in stage 2 (the model of the best epoch is appended
    to ``keep`` if given)."""
    s0, s1, s2 = a.stage_epochs
    out = train(AudioJob(), {"seed": seed, "data": _data_options(a, dm.encoders, dm.split),
                             "model": {**_model_options(a), "stage0_epochs": s0, "stage1_epochs": s1, **model_kw},
                             "optim": {"lr": a.lr}, "trainer": {"max_epochs": s2, "patience": 0}}, dm=dm)
    if keep is not None:
        keep.append(out.task.model.eval())
    return {**out.metrics, "params": sum(p.numel() for p in out.task.model.parameters() if p.requires_grad)}


def _data_options(a, encoders: list[str], split: str | None = None) -> dict:
    return {"encoders": list(encoders), "subset": a.subset, "split": split or a.split}


def _data(a, encoders: list[str], seed: int, split: str | None = None) -> AudioQA:
    """The question set of ``seed``: the data seed is the model seed, so a seed varies the questions, gains,
    multi-digit items and order as well as the initialisation."""
    key = (tuple(encoders), seed, split or a.split)
    if key not in a.cache:
        a.cache[key] = job_data(AudioJob(), {"seed": seed, "data": _data_options(a, encoders, split),
                                             "model": {"lm": a.lm}})
    return a.cache[key]


def _majority(dm: AudioQA) -> dict:
    """The per-type majority answer as a row of test metrics (``test_acc``, per type, rephrased)."""
    test = dm.sets["test"].rows
    macro, per = majority_floor(dm.sets["train"].rows, [r for r in test if not r["rephrased"]])
    reph, _ = majority_floor(dm.sets["train"].rows, [r for r in test if r["rephrased"]])
    return {"test_acc": macro, "test_acc_rephrased": reph, **{f"test_acc_{t}": v for t, v in per.items()}}


# the paper's claims, each a paired difference (row a - row b, per seed) whose interval decides it
CLAIMS = (("LAL beats PLITS", "LAL", "PLITS"),
          ("delayed integration helps PLITS", "PLITS, delayed (layer 2)", "PLITS"),
          ("delayed integration helps LAL", "LAL, delayed (layer 2)", "LAL"),
          ("PAL beats LAL", "PAL", "LAL"),
          ("PAL beats PLITS", "PAL", "PLITS"),
          ("PAL's gain is its PLITS route, not its parameters", "PAL", MATCHED),
          ("the model hears the audio (above the text-only floor)", "LAL", TEXT_ONLY))


def _claims(runs: dict[str, list[dict]]) -> str:
    rows = []
    for claim, x, y in CLAIMS:
        if x in runs and y in runs:
            cell = paired_cell([p["test_acc"] - q["test_acc"] for p, q in zip(runs[x], runs[y])], below="reversed",
                               above="reproduced").replace("no difference shown", "not reproduced")
            rows.append([claim, f"{x} - {y}", cell])
    return markdown(["paper's claim", "paired difference (macro accuracy)", "mean [95 % CI] over seeds: answer"],
                    rows)


def _rows(a, runs: dict[str, list[dict]]) -> list[list[str]]:
    cols = ["test_acc", "test_acc_blind", "test_acc_rephrased"] + [f"test_acc_{t}" for t in TYPES]
    return [[n, f"{rs[0]['params']:,}" if "params" in rs[0] else "-"]
            + [mean_std([r[c] for r in rs], 3) if c in rs[0] else "-" for c in cols] for n, rs in runs.items()]


def _header(first: str) -> list[str]:
    return [first, "trained params", "macro", "blind", "rephrased"] + list(TYPES)


def _note(a, encoders) -> str:
    return (f"\n\nTest accuracy, mean ± std over seeds {a.seeds}; encoders {'+'.join(encoders)}; FSDD {a.split} split "
            f"({'all recordings' if not a.subset else f'{a.subset} per digit and speaker'}); "
            f"{_lm_note(a)}; stage epochs {a.stage_epochs} (oracle LM, connectors, all); blind = the same model with the "
            f"audio removed; rephrased = the held-out template of each type (macro). Each seed draws its own questions "
            f"(data seed = model seed); claims: paired differences per seed, t interval.")


def _lm_note(a) -> str:
    if a.lm == "scratch":
        return f"LM from scratch, width {a.dim}, 4 layers"
    return f"LM {a.lm}, frozen (connectors train)"


def integration(a) -> str:
    runs = {}
    for name, model in METHODS.items():
        if _key(model) not in a.methods:
            continue
        runs[name] = [train_and_test(_data(a, a.encoders, s), a, s, **model) for s in a.seeds]
        print(f"{name}: " + ", ".join(f"{r['test_acc']:.3f}" for r in runs[name]), flush=True)
    floor = {"per-type majority answer (no model)": [_majority(_data(a, a.encoders, s)) for s in a.seeds]}
    return (markdown(_header("integration"), _rows(a, {**runs, **floor})) + _note(a, a.encoders) + "\n\n"
            + _claims(runs))


def encoders(a) -> str:
    runs = {}
    for enc in a.encoders + ["+".join(a.encoders)]:
        runs[f"LAL on {enc}"] = [train_and_test(_data(a, enc.split("+"), s), a, s, integration="lal")
                                 for s in a.seeds]
        print(f"{enc}: " + ", ".join(f"{r['test_acc']:.3f}" for r in runs[f"LAL on {enc}"]), flush=True)
    ensemble = f"LAL on {'+'.join(a.encoders)}"
    pairs = [[f"{ensemble} - LAL on {enc}", paired_cell([p["test_acc"] - q["test_acc"] for p, q in
                                                         zip(runs[ensemble], runs[f"LAL on {enc}"])])]
             for enc in a.encoders] if len(a.encoders) > 1 else []
    return (markdown(_header("encoders"), _rows(a, runs)) + _note(a, a.encoders)
            + ("\n\n" + markdown(["paired over seeds (macro accuracy)", "mean [95 % CI]"], pairs) if pairs else ""))


def speakers(a) -> str:
    """Leave one speaker out, each of the six in turn: LAL and PLITS trained without that voice and tested on it,
    beside the per-type majority answer; the speaker is the unit of the paired intervals."""
    names = ("LAL", "PLITS")
    floor = "per-type majority answer"
    per: dict[str, list[float]] = {n: [] for n in (*names, floor)}
    rows = []
    for spk in SPEAKERS:
        split = f"speaker:{spk}"
        for n in names:
            accs = [train_and_test(_data(a, a.encoders, s, split), a, s, **METHODS[n])["test_acc"] for s in a.seeds]
            per[n].append(sum(accs) / len(accs))
        per[floor].append(sum(_majority(_data(a, a.encoders, s, split))["test_acc"] for s in a.seeds) / len(a.seeds))
        rows.append([spk] + [f"{per[n][-1]:.3f}" for n in per])
        print(f"{spk}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in per.items()), flush=True)
    rows.append(["mean ± std over speakers"] + [mean_std(v, 3) for v in per.values()])
    pairs = [[f"{x} - {y}", paired_cell([p - q for p, q in zip(per[x], per[y])])]
             for x, y in (("LAL", "PLITS"), ("LAL", floor), ("PLITS", floor))]
    return (markdown(["held-out speaker", *per], rows) + "\n\n"
            + markdown(["paired over the six speakers (macro accuracy)", "mean [95 % CI]"], pairs)
            + f"\n\nTest accuracy (macro over question types, training templates) on the held-out speaker's clips, "
              f"each speaker the mean of seeds {a.seeds}; encoders {'+'.join(a.encoders)}; {_lm_note(a)}; stage "
              f"epochs {a.stage_epochs}. The speaker question cannot be answered for an unheard voice; it stays in "
              f"the macro mean as in every other row.")


def probes(a) -> str:
    import matplotlib.pyplot as plt
    import mlflow

    from apps.audio.probes import LABELS, audio_attention_mass, probe_accuracy

    dm = _data(a, a.encoders, a.seeds[0])
    rows, curves = [], {}
    for name in ("PLITS", "LAL"):
        kept: list = []
        train_and_test(dm, a, a.seeds[0], keep=kept, integration=name.lower())
        acc, mass = probe_accuracy(kept[0], dm), audio_attention_mass(kept[0], dm)
        curves[name] = (acc, mass)
        for layer in range(len(mass)):
            rows.append([name, layer + 1] + [f"{acc[k][layer]:.3f}" for k in LABELS] + [f"{mass[layer]:.3f}"])
    fig, axes = plt.subplots(1, len(LABELS) + 1, figsize=(14, 3))
    for name, (acc, mass) in curves.items():
        for ax, k in zip(axes, LABELS):
            ax.plot(range(1, len(acc[k]) + 1), acc[k], marker="o", label=name)
            ax.set_title(f"{k}: probe accuracy")
        axes[-1].plot(range(1, len(mass) + 1), mass, marker="o", label=name)
    axes[-1].set_title("attention on audio at <ans>")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.legend()
    fig.tight_layout()
    mlflow.log_figure(fig, "audio_probes.png")
    plt.close(fig)
    return markdown(["integration", "layer"] + [f"{k} probe" for k in LABELS] + ["attention on audio"], rows) + (
        f"\n\nLinear probes (logistic regression) on the text state at <ans> after each layer, fitted on the "
        f"training items' digit questions, scored on the test items'; attention share: mean over heads and test "
        f"digit questions. Seed {a.seeds[0]}; encoders {'+'.join(a.encoders)}; stage epochs {a.stage_epochs}.")


def _activation_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def cost(a) -> str:
    g = torch.Generator().manual_seed(0)
    b, nt, d = 16, 12, 40
    tokens = torch.randint(4, 60, (b, nt), generator=g)
    models = {n: AudioLM(75, {"mel": d}, integration=n, dim=a.dim, stride=1, drop=0.0) for n in ("plits", "lal",
                                                                                                 "pal")}
    rows = []
    for na in a.tokens:
        audio = {"mel": (torch.randn(b, na, d, generator=g), torch.ones(b, na, dtype=torch.bool))}
        steps = {n: (lambda m=m: m(tokens, audio).logsumexp(-1).sum().backward()) for n, m in models.items()}
        mem = {n: _activation_bytes(f) for n, f in steps.items()}
        med = {n: ms / 1e3 for n, ms in interleaved_ms(steps, a.reps, warmup=1).items()}  # seconds
        for n in steps:
            rows.append([na, n.upper(), f"{1000 * med[n]:.1f}", f"{b / med[n]:,.0f}", f"{med['plits'] / med[n]:.2f}",
                         f"{mem[n] / 2 ** 20:.1f}", f"{mem[n] / mem['plits']:.2f}"])
    return markdown(["audio tokens", "integration", "ms / step", "examples / s", "throughput vs PLITS",
                     "activation MB", "memory vs PLITS"], rows) + (
        f"\n\nOne training step (forward + backward) of the LM (width {a.dim}, 4 layers, MLP connector with stride "
        f"1 so the audio tokens are as stated), batch {b}, {nt} text tokens, {a.reps} interleaved repetitions after "
        f"a warm-up, median; {torch.get_num_threads()} threads. Memory: the tensors autograd saves for backward.")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench audio", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 recordings per digit and speaker, 1 seed, 1 epoch a "
                                                         "stage, 3 timing reps")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--encoders", nargs="+", default=["mel", "ge2e"])
    ap.add_argument("--stage_epochs", nargs=3, type=int, default=[3, 3, 6])
    keys = [_key(m) for m in METHODS.values()]
    ap.add_argument("--methods", nargs="+", default=keys, choices=keys, help="the integration section's rows")
    ap.add_argument("--lm", default="scratch", help="scratch, or hf:PATH (a local pretrained causal LM, frozen; the "
                                                    "gated cross-attention row needs the scratch LM)")
    ap.add_argument("--lr", type=float, default=3e-4, help="stage 2's peak learning rate")
    ap.add_argument("--split", default="official", help="official, or speaker:<name> (that speaker held out)")
    ap.add_argument("--subset", type=int, default=0, help="recordings per digit and speaker (0: all)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--tokens", nargs="+", type=int, default=[32, 128, 512], help="audio tokens (cost)")
    add_common(ap, SECTIONS)
    a = parse_quick(ap, argv, subset=2, seeds=ap.get_default("seeds")[:1], stage_epochs=[1, 1, 1], reps=3)
    a.cache = {}
    if a.lm != "scratch":
        a.methods = [m for m in a.methods if m != "xattn"]
    return check_sections(ap, a, SECTIONS)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    params = {"sections": ",".join(a.sections), "seeds": ",".join(map(str, a.seeds)),
              "encoders": ",".join(a.encoders), "stage_epochs": ",".join(map(str, a.stage_epochs)),
              "subset": a.subset, "dim": a.dim, "split": a.split, "lm": a.lm, "lr": a.lr,
              "methods": ",".join(a.methods)}
    return bench_main("audio", a, {s: globals()[s] for s in SECTIONS},
                      lambda: (AudioQA(encoders=a.encoders, split=a.split),  # a bad split or encoder: exit 2
                               fsdd_files(data_dir() / "audio" / "fsdd" / "recordings")), params)

"""FFN variants side by side: ``python -m pipelines.bench ffn [--quick]``.

For every variant, in one process, with the dense MLP as the baseline:
- parameters and eval forward latency of one FFN at width 192 (hidden 768, 8192 tokens), before and
  after ``reparam()`` where the variant has one (median of repeated runs, ratio to the MLP);
- a character-level GPT on tiny-shakespeare (nanoGPT's CPU recipe, same seed and batches): val loss;
- S-Mamba on ETTh1 (L=96, H=96, the paper's settings, epochs capped): test MSE;
- MoE: expert load on validation batches (max / uniform); CHESS: val loss after calibrating thresholds
  to ``CHESS_SPARSITY`` of activations on 20 training batches.
One MLflow run in the ``bench`` experiment with the table as an artifact.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import mlflow
import torch

from core.datadir import DataError
from core.ffn import FFN, MoE, build_ffn, calibrate_chess, reparam_model, set_guidance
from pipelines import tracking
from pipelines.bench.charlm import batches, evaluate, load_text, train
from pipelines.bench.table import markdown
from pipelines.config import ConfigError
from pipelines.forecast import ForecastJob
from pipelines.runner import run, set_threads

VARIANTS = {  # name -> ffn_kw used in the comparison
    "mlp": {}, "swiglu": {}, "lowrank": {}, "blockdense": {}, "moe": {"experts": 4, "top_k": 1},
    "repa": {"idle": 0.75}, "chess": {}, "duo": {},
}


CHESS_SPARSITY = 0.5


@torch.no_grad()
def latency(module, x, reps: int) -> float:
    module.eval()
    for _ in range(3):
        module(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        module(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ffn_speed(name: str, kw: dict, reps: int, width: int = 192, tokens: int = 8192) -> dict:
    torch.manual_seed(0)
    f = build_ffn(name, width, hidden=4 * width, **kw)
    set_guidance(f, 0.0)  # structured variants: the trained (a = 0) form
    x = torch.randn(tokens, width)
    # structured variants: count what remains after training (the guiding dense copies are dropped at a = 0)
    guide = tuple(f"{fc}.dense." for fc in ("fc1", "fc2"))
    out = {"params": sum(p.numel() for n, p in f.named_parameters() if not n.startswith(guide)),
           "latency": latency(f, x, reps)}
    if any(hasattr(m, "reparam") for m in f.modules()):
        reparam_model(f.eval())
        out["latency_reparam"] = latency(f, x, reps)
    return out


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench ffn", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 LM iterations, a short S-Mamba run")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--iters", type=int, default=None, help="char-LM iterations (default 2000 as nanoGPT; quick 200)")
    ap.add_argument("--epochs", type=int, default=None, help="S-Mamba epochs per variant (default 3; quick 1)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    a.iters = a.iters or (200 if a.quick else 2000)
    a.epochs = a.epochs or (1 if a.quick else 3)
    return a


def main(argv: list[str]) -> int:
    a = parse(argv)
    unknown = [v for v in a.variants if v not in FFN]
    try:
        if unknown:
            raise ConfigError(f"unknown FFN variant(s) {unknown}; known: {sorted(FFN)}")
        text = load_text()
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threads = set_threads({"threads": a.threads})
    tracking.activate()
    tracking.use_experiment("bench")
    job, rows, t0 = ForecastJob(), [], time.time()
    reps = 5 if a.quick else 20
    base = ffn_speed("mlp", {}, reps)
    with mlflow.start_run(run_name="bench-ffn" + ("-quick" if a.quick else "")) as parent:
        mlflow.log_params({"iters": a.iters, "epochs": a.epochs, "threads": threads, "variants": ",".join(a.variants)})
        for name in a.variants:
            kw = VARIANTS.get(name, {})
            sp = ffn_speed(name, kw, reps)
            lm = train(name, kw, a.iters, text=text)
            extra = ""
            if name == "moe":
                moes = [m for m in lm["model"].modules() if isinstance(m, MoE)]
                evaluate(lm["model"], text[1], 64, 12, iters=5)
                extra = f"max expert load {max(float(m.load.max()) * len(m.experts) for m in moes):.2f}x uniform"
            elif name == "chess":  # thresholds from 20 training batches, then the same validation batches
                gen = torch.Generator().manual_seed(7)
                calibrate_chess(lm["model"], [batches(text[0], 64, 12, gen)[0] for _ in range(20)], CHESS_SPARSITY)
                sparse = evaluate(lm["model"], text[1], 64, 12)
                extra = f"val loss {sparse:.3f} at {CHESS_SPARSITY:.0%} activation sparsity"
            user = {"model": {"name": "s_mamba", "ffn": name, "ffn_kw": kw}, "data": {"data": "ETTh1", "horizon": 96},
                    "trainer": {"max_epochs": a.epochs, "enable_progress_bar": False, "enable_model_summary": False},
                    "mlflow": {"experiment": "bench", "register": False, "run_name": f"ffn-{name}-s_mamba",
                               "tags": {"mlflow.parentRunId": parent.info.run_id}}}
            if a.quick:
                user["trainer"].update(limit_train_batches=40)
            fc = run(job, cfg=job.resolve(user))
            rep = sp.get("latency_reparam")
            rows.append([name, f"{sp['params'] / base['params']:.2f}", f"{sp['latency'] * 1e3:.2f}",
                         f"{base['latency'] / sp['latency']:.2f}x",
                         f"{rep * 1e3:.2f} ({base['latency'] / rep:.2f}x)" if rep else "-",
                         f"{lm['val_loss']:.3f}", f"{lm['train_seconds']:.0f}", f"{fc.metrics['test_mse']:.4f}", extra or "-"])
            mlflow.log_metrics({f"{name}.lm_val_loss": lm["val_loss"], f"{name}.smamba_test_mse": fc.metrics["test_mse"],
                                f"{name}.latency_ms": sp["latency"] * 1e3})
            print(" | ".join(rows[-1]), f"({time.time() - t0:.0f}s)", flush=True)
        header = ["ffn", "params / mlp", "fwd ms", "speed vs mlp", "fwd ms after reparam (vs mlp)",
                  f"char-LM val loss ({a.iters} it)", "LM train s", f"S-Mamba ETTh1 MSE ({a.epochs} ep)", "variant-specific"]
        table = markdown(header, rows)
        mlflow.log_text(table, "bench_ffn.md")
    print(table)
    print(f"\nwidth 192 / hidden 768 FFN latency over 8192 tokens; nanoGPT reference: char-LM val loss 1.88 at 2000 it."
          f"\n{threads} threads, {time.time() - t0:.0f}s; MLflow run {parent.info.run_id}")
    return 0

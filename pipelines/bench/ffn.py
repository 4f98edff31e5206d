"""FFN variants side by side: ``python -m pipelines.bench ffn [--quick] [--sections lm speed smamba domains]``.

For every variant, in one process, with the dense MLP as the baseline, one section (and table) each:
- ``speed``: parameters and eval forward latency of one FFN at width 192 (hidden 768, 8192 tokens), before and
  after ``reparam()`` where the variant has one, timed interleaved with a dense MLP of the same width (median of
  repeated rounds; the ratio is the MLP's ms / the variant's, so the MLP's own row measures the noise);
- ``lm``: a character-level GPT on tiny-shakespeare (nanoGPT's CPU recipe, same seed and batches): val loss;
- ``smamba``: S-Mamba on ETTh1 (L=96, H=96, the paper's settings, epochs capped): test MSE, mean ± std over
  ``--seeds``;
- ``domains``: every variant through every app's default job (:mod:`pipelines.bench.domains`): headline metric,
  parameters and training-step time vs mlp per app; ``--resume`` continues an interrupted table;
- in ``lm``, MoE: expert load on validation batches (max / uniform); CHESS: val loss after calibrating thresholds
  to ``CHESS_SPARSITY`` of activations on 20 training batches (the LM column is the uncalibrated, dense form);
- Duo: its router trained as Duo-LLM does (oracle routes under a compute budget on training batches, then
  cross-entropy), the LM val loss with that router, its route shares and compute; the latency with routes
  forced in those shares (so ``speed`` needs ``lm`` for Duo's row). The S-Mamba job has no router stage, so Duo
  serves its big route there.
One MLflow run in the ``bench`` experiment with each section's table as an artifact.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys

import mlflow
import torch

from core.ffn import FFN, MoE, build_ffn, calibrate_chess, reparam_model, set_guidance
from core.ffn.duo import DuoFFN, oracle_routes
from pipelines.bench.charlm import batches, evaluate, load_text, train
from pipelines.bench.domains import APPS, domains
from pipelines.bench.sections import add_common, bench_main, check_sections, interleaved_ms, parse_quick
from pipelines.bench.table import markdown, mean_std
from pipelines.forecast import ForecastJob
from pipelines.runner import run

VARIANTS = {  # name -> ffn_kw used in the comparison
    "mlp": {}, "swiglu": {}, "lowrank": {}, "blockdense": {}, "moe": {"experts": 4, "top_k": 1},
    "repa": {"idle": 0.75}, "chess": {}, "duo": {},
}


CHESS_SPARSITY = 0.5
DUO_BUDGET = 0.5  # Duo: mean compute per token and layer, as a share of the big FFN's
DUO_ORACLE_BATCHES = 16


def ffn_speed(name: str, kw: dict, reps: int, width: int = 192, tokens: int = 8192, routes=None) -> dict:
    """Parameters and eval forward ms of ``name`` and of the dense MLP, timed interleaved (and of the
    ``reparam()`` form where the variant has one). ``routes``: Duo's route shares (skip, small, big), forced."""
    torch.manual_seed(0)
    mlp, f = build_ffn("mlp", width, hidden=4 * width), build_ffn(name, width, hidden=4 * width, **kw)
    set_guidance(f, 0.0)  # structured variants: the trained (a = 0) form
    x = torch.randn(tokens, width)
    if routes is not None:
        f.route = torch.multinomial(torch.tensor(routes), tokens, replacement=True, generator=torch.Generator()
                                    .manual_seed(0))
    # structured variants: count what remains after training (the guiding dense copies are dropped at a = 0)
    guide = tuple(f"{fc}.dense." for fc in ("fc1", "fc2"))
    count = lambda m: sum(p.numel() for n, p in m.named_parameters() if not n.startswith(guide))  # noqa: E731
    fns = {"mlp": mlp.eval(), "variant": f.eval()}
    if any(hasattr(m, "reparam") for m in f.modules()):
        fns["reparam"] = reparam_model(copy.deepcopy(f).eval())
    with torch.no_grad():
        ms = interleaved_ms({k: (lambda m=m: m(x)) for k, m in fns.items()}, reps, warmup=3)
    return {"params": count(f) / count(mlp), "ms": ms}


def train_duo_router(model, train_data, budget: float, n_batches: int, epochs: int = 30, seed: int = 11) -> None:
    """Duo-LLM's router, trained as the paper does: oracle routes (per token, under the compute ``budget``) on
    ``n_batches`` training batches, then each layer's ``Linear(dim, 3)`` fit to them by cross-entropy, the rest of
    the model frozen (the router sees detached inputs, so only its weights get gradients)."""
    layers = [m for m in model.modules() if isinstance(m, DuoFFN)]
    gen = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(n_batches):
        x, y = batches(train_data, 64, 12, gen)
        loss_fn = lambda m, x=x, y=y: torch.nn.functional.cross_entropy(  # noqa: E731
            m(x).flatten(0, 1), y.flatten(), reduction="none")
        routes, _ = oracle_routes(model, loss_fn, budget)
        data.append((x, routes))
    opt = torch.optim.Adam([p for m in layers for p in m.router.parameters()], lr=1e-2)
    model.eval()
    for _ in range(epochs):
        for x, routes in data:
            for m, r in zip(layers, routes):
                m.route = r  # the router learns on the inputs it meets along the oracle's path
            model(x)
            loss = sum(m.router_loss(r) for m, r in zip(layers, routes))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for m in layers:
        m.route = None
    model.train()


SECTIONS = ("lm", "speed", "smamba", "domains")  # in this order: speed takes Duo's route shares from lm


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench ffn", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 LM iterations, a short S-Mamba run")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--iters", type=int, default=None, help="char-LM iterations (default 2000 as nanoGPT; quick 200)")
    ap.add_argument("--epochs", type=int, default=None, help="S-Mamba epochs per variant (default 1)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025],
                    help="S-Mamba and domains seeds (quick: the first)")
    ap.add_argument("--apps", nargs="+", default=list(APPS), choices=APPS, help="domains: the apps (columns)")
    ap.add_argument("--domain-seeds", nargs="+", type=int, default=[0, 1], help="domains: seeds (quick: the first)")
    ap.add_argument("--resume", action="store_true",
                    help="domains: reuse every finished training of the same app, variant, seed, budget and code")
    add_common(ap, SECTIONS, default=SECTIONS[:3])  # domains trains every variant in every app: asked for by name
    a = check_sections(ap, parse_quick(ap, argv, seeds=ap.get_default("seeds")[:1], domain_seeds=[0], reps=5),
                       SECTIONS)
    a.sections = [s for s in SECTIONS if s in a.sections]
    a.iters = a.iters or (200 if a.quick else 2000)
    a.epochs = a.epochs or 1
    a.duo_routes = None
    return a


def lm_extra(name: str, model, text, budget: float, oracle_batches: int = DUO_ORACLE_BATCHES) -> tuple[str, dict]:
    """The variant's own figure (and, for Duo, the learned router's val loss and route shares)."""
    if name == "moe":
        moes = [m for m in model.modules() if isinstance(m, MoE)]
        evaluate(model, text[1], 64, 12, iters=5)
        return f"max expert load {max(float(m.load.max()) * len(m.experts) for m in moes):.2f}x uniform", {}
    if name == "chess":  # thresholds from 20 training batches, then the same validation batches
        gen = torch.Generator().manual_seed(7)
        calibrate_chess(model, [batches(text[0], 64, 12, gen)[0] for _ in range(20)], CHESS_SPARSITY)
        sparse = evaluate(model, text[1], 64, 12)
        return f"val loss {sparse:.3f} at {CHESS_SPARSITY:.0%} activation sparsity (calibrated)", {}
    if name == "duo":
        layers = [m for m in model.modules() if isinstance(m, DuoFFN)]
        train_duo_router(model, text[0], budget, n_batches=oracle_batches)
        for m in layers:
            m.router_ready.fill_(True)
        counts = torch.zeros(3)
        model.eval()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(1)  # the validation batches ``evaluate`` scores
            for _ in range(20):
                model(batches(text[1], 64, 12, gen)[0])
                counts += sum(torch.bincount(m.last_route.flatten(), minlength=3) for m in layers)
        shares = (counts / counts.sum()).tolist()
        compute = sum(c * s for c, s in zip(layers[0].cost, shares))
        val = evaluate(model, text[1], 64, 12)
        return (f"router trained on oracle routes at budget {budget}: skip / small / big "
                f"{' / '.join(f'{s:.2f}' for s in shares)}, compute {compute:.2f} of big"), \
            {"val_loss": val, "routes": shares}
    return "", {}


def lm_section(a) -> str:
    text = load_text()
    rows = []
    for name in a.variants:
        kw = VARIANTS.get(name, {})
        lm = train(name, kw, a.iters, text=text)
        extra, over = lm_extra(name, lm["model"], text, DUO_BUDGET, 4 if a.quick else DUO_ORACLE_BATCHES)
        lm.update(over)
        if name == "duo":
            a.duo_routes = lm["routes"]
        rows.append([name, f"{lm['val_loss']:.3f}", f"{lm['train_seconds']:.0f}", extra or "-"])
        mlflow.log_metric(f"{name}.lm_val_loss", lm["val_loss"])
        print(" | ".join(rows[-1]), flush=True)
    return (f"char-LM on tiny-shakespeare, {a.iters} iterations (nanoGPT's CPU recipe; nanoGPT reports val loss 1.88 "
            "at 2000)\n\n" + markdown(["ffn", "val loss", "train s", "variant-specific"], rows))


def speed_section(a) -> str:
    rows = []
    for name in a.variants:
        if name == "duo" and a.duo_routes is None:
            rows.append([name, "-", "-", "- (route shares come from the lm section's trained router)", "-"])
            continue
        sp = ffn_speed(name, VARIANTS.get(name, {}), a.reps, routes=a.duo_routes if name == "duo" else None)
        ms = sp["ms"]
        rows.append([name, f"{sp['params']:.2f}", f"{ms['variant']:.2f} / {ms['mlp']:.2f}",
                     f"{ms['mlp'] / ms['variant']:.2f}x",
                     f"{ms['reparam']:.2f} ({ms['mlp'] / ms['reparam']:.2f}x)" if "reparam" in ms else "-"])
        mlflow.log_metric(f"{name}.speed_vs_mlp", ms["mlp"] / ms["variant"])
    return ("one FFN, width 192, hidden 768, 8192 tokens, eval forward, each variant timed interleaved with a dense "
            f"MLP ({a.reps} rounds, medians; Duo with routes forced in its trained router's shares)\n\n"
            + markdown(["ffn", "params / mlp", "fwd ms (variant / mlp)", "speed vs mlp",
                        "fwd ms after reparam (vs mlp)"], rows))


def smamba_section(a) -> str:
    job, rows = ForecastJob(), []
    parent = mlflow.active_run().info.run_id
    for name in a.variants:
        kw, mses = VARIANTS.get(name, {}), []
        for seed in a.seeds:
            user = {"seed": seed, "model": {"name": "s_mamba", "ffn": name, "ffn_kw": kw},
                    "data": {"data": "ETTh1", "horizon": 96},
                    "trainer": {"max_epochs": a.epochs, "enable_progress_bar": False, "enable_model_summary": False},
                    "mlflow": {"experiment": "bench", "register": False, "run_name": f"ffn-{name}-s_mamba-{seed}",
                               "tags": {"mlflow.parentRunId": parent}}}
            if a.quick:  # plumbing only: a slice of every split
                user["trainer"].update(limit_train_batches=40, limit_val_batches=10, limit_test_batches=10)
            mses.append(run(job, cfg=job.resolve(user)).metrics["test_mse"])
        rows.append([name, mean_std(mses, 4) + (" (big route: no router stage)" if name == "duo" else "")])
        mlflow.log_metric(f"{name}.smamba_test_mse", statistics.mean(mses))
        print(" | ".join(rows[-1]), flush=True)
    quick = " (quick: 40 training, 10 val, 10 test batches)" if a.quick else ""
    return (f"S-Mamba, ETTh1, L 96, H 96, the paper's settings but {a.epochs} epoch(s); test MSE, mean ± std over "
            f"seeds {', '.join(map(str, a.seeds))}{quick}\n\n" + markdown(["ffn", "S-Mamba ETTh1 test MSE"], rows))


def main(argv: list[str]) -> int:
    a = parse(argv)
    unknown = [v for v in a.variants if v not in FFN]
    if unknown:
        print(f"error: unknown FFN variant(s) {unknown}; known: {sorted(FFN)}", file=sys.stderr)
        return 2
    return bench_main("ffn", a, {"lm": lm_section, "speed": speed_section, "smamba": smamba_section,
                                 "domains": domains}, load_text,
                      {"iters": a.iters, "epochs": a.epochs, "variants": ",".join(a.variants),
                       "seeds": ",".join(map(str, a.seeds)), "apps": ",".join(a.apps),
                       "domain_seeds": ",".join(map(str, a.domain_seeds))})

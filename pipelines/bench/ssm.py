"""Our selective scan and Mamba block against the reference CPU implementation (``mambapy``):
``python -m pipelines.bench ssm [--quick]`` (needs the ``bench`` extra: ``pip install -e .[bench]``).

1. The selective scan, forward + backward, fp32, batch 16, d_inner 256, d_state 16, at L = 11, 64, 256,
   1024: ours (path chosen automatically) vs mambapy's parallel scan (Blelloch, padded to a power of two)
   vs mambapy's sequential loop. Median wall and CPU time over repeats; peak memory of one forward +
   backward above the inputs (the kernel's peak-RSS mark, reset before the run, in a fresh process per cell).
2. S-Mamba (ETTh1, L=96, H=96, the paper's settings) with our Mamba mixers vs mambapy's ``MambaBlock``:
   one training step (forward, backward, Adam) and inference latency on real ETTh1 batches.
All cells of a table run in this one invocation, side by side; ratios are ours / best mambapy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

BATCH, D_INNER, D_STATE = 16, 256, 16
LENGTHS = (11, 64, 256, 1024)


def _scan_inputs(L: int, ours: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, L, D_INNER, generator=g)
    delta = 0.5 * torch.rand(BATCH, L, D_INNER, generator=g)
    A = -torch.rand(D_INNER, D_STATE, generator=g)
    B, C = torch.randn(BATCH, L, D_STATE, generator=g), torch.randn(BATCH, L, D_STATE, generator=g)
    D = torch.randn(D_INNER, generator=g)
    if ours:  # mamba-ssm layout [B, C, L]
        x, delta, B, C = (t.transpose(1, 2).contiguous() for t in (x, delta, B, C))
    return [t.requires_grad_() for t in (x, delta, A, B, C, D)]


def _scan_fn(impl: str, L: int):
    """A closure running one forward + backward of ``impl`` at length L."""
    if impl == "ours":
        from core.ssm import selective_scan

        x, delta, A, B, C, D = _scan_inputs(L, True)
        return lambda: selective_scan(x, delta, A, B, C, D).sum().backward()
    from mambapy.pscan import pscan

    x, delta, A, B, C, D = _scan_inputs(L, False)

    def mambapy(parallel: bool):
        # mambapy.mamba.MambaBlock.selective_scan / selective_scan_seq, as the package writes them
        dA = torch.exp(delta.unsqueeze(-1) * A)
        BX = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)
        if parallel:
            hs = pscan(dA, BX)
        else:
            h, hl = torch.zeros(BATCH, D_INNER, D_STATE), []
            for t in range(L):
                h = dA[:, t] * h + BX[:, t]
                hl.append(h)
            hs = torch.stack(hl, dim=1)
        y = (hs @ C.unsqueeze(-1)).squeeze(3) + D * x
        y.sum().backward()

    return lambda: mambapy(impl == "mambapy_parallel")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) and return the current RSS in kB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def measure_cell(impl: str, L: int, reps: int, threads: int) -> dict:
    """Run in a fresh process: median wall / CPU seconds and peak extra memory (MB) of one fwd+bwd."""
    torch.set_num_threads(threads)
    f = _scan_fn(impl, L)
    base = _reset_peak_rss()
    t0 = time.perf_counter()
    f()  # warm-up, also the peak-memory run
    first = time.perf_counter() - t0
    peak_mb = (_status_kb("VmHWM") - base) / 1024
    walls, cpus = [first], []
    for _ in range(reps if first < 20 else 0):  # a cell slower than 20 s is timed once
        c, t = time.process_time(), time.perf_counter()
        f()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"wall": statistics.median(walls[1:] or walls), "cpu": statistics.median(cpus) if cpus else float("nan"),
            "peak_mb": peak_mb}


def _cell_in_subprocess(impl: str, L: int, reps: int, threads: int) -> dict:
    code = (f"import json; from pipelines.bench.ssm import measure_cell; "
            f"print(json.dumps(measure_cell({impl!r}, {L}, {reps}, {threads})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def smamba_speed(reps: int) -> dict:
    """Train-step and inference latency of S-Mamba with our mixers vs mambapy's MambaBlock, same batches."""
    from mambapy.mamba import MambaBlock, MambaConfig

    from apps.forecast.data import ForecastData
    from apps.forecast.models import build_model
    from apps.forecast.presets import preset

    dm = ForecastData("ETTh1")
    dm.setup()
    batches = [b for _, b in zip(range(reps + 2), dm.train_dataloader())]
    kw = preset("s_mamba", "ETTh1", 96)["model"]
    out = {}
    for name in ("ours", "mambapy"):
        torch.manual_seed(0)
        model = build_model("s_mamba", dm.n_vars, 96, 96, **kw)
        if name == "mambapy":
            cfg = MambaConfig(d_model=kw["d_model"], n_layers=1, d_state=kw["d_state"], expand_factor=1, d_conv=2)
            for blk in model.encoder.blocks:
                blk.mixer.fwd, blk.mixer.bwd = MambaBlock(cfg), MambaBlock(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=7e-5)

        def step(b):
            x, m, y = b
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x, m), y).backward()
            opt.step()

        def infer(b):
            with torch.no_grad():
                model(b[0], b[1])

        res = {}
        for what, fn in (("train_step", step), ("inference", infer)):
            model.train(what == "train_step")
            for b in batches[:2]:
                fn(b)
            times = []
            for b in batches[2:]:
                t = time.perf_counter()
                fn(b)
                times.append(time.perf_counter() - t)
            res[what] = statistics.median(times)
        out[name] = res
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench ssm", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="L = 11, 64 and fewer repeats")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        import mambapy  # noqa: F401
    except ImportError:
        print("error: the ssm benchmark compares against mambapy: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    import mlflow

    from pipelines import tracking
    from pipelines.bench.table import markdown
    from pipelines.runner import set_threads

    threads = set_threads({"threads": a.threads})
    lengths = LENGTHS[:2] if a.quick else LENGTHS
    reps = a.reps or (3 if a.quick else 7)
    rows, metrics = [], {}
    for L in lengths:
        cells = {impl: _cell_in_subprocess(impl, L, reps, threads)
                 for impl in ("ours", "mambapy_parallel", "mambapy_sequential")}
        best = min(("mambapy_parallel", "mambapy_sequential"), key=lambda k: cells[k]["wall"])
        ratio = cells["ours"]["wall"] / cells[best]["wall"]
        mem = cells["ours"]["peak_mb"] / max(cells[best]["peak_mb"], 1e-9)
        rows.append([L] + [f"{cells[k]['wall'] * 1e3:.1f}" for k in ("ours", "mambapy_parallel", "mambapy_sequential")]
                    + [f"{cells['ours']['cpu'] * 1e3:.1f}", f"{ratio:.2f}",
                       f"{cells['ours']['peak_mb']:.0f} / {cells[best]['peak_mb']:.0f}", f"{mem:.2f}"])
        metrics.update({f"scan_ratio_L{L}": ratio, f"scan_mem_ratio_L{L}": mem})
        print(" | ".join(map(str, rows[-1])), flush=True)
    scan_table = markdown(["L", "ours ms", "mambapy parallel ms", "mambapy sequential ms", "ours CPU ms",
                           "ours / best mambapy", "peak MB ours / best", "memory ratio"], rows)
    sm = smamba_speed(reps=10 if a.quick else 30)
    model_table = markdown(["S-Mamba ETTh1 (batch 32)", "ours ms", "mambapy ms", "ours / mambapy"],
                           [[k, f"{sm['ours'][k] * 1e3:.1f}", f"{sm['mambapy'][k] * 1e3:.1f}",
                             f"{sm['ours'][k] / sm['mambapy'][k]:.2f}"] for k in ("train_step", "inference")])
    metrics.update({f"smamba_{k}_ratio": sm["ours"][k] / sm["mambapy"][k] for k in ("train_step", "inference")})
    tracking.activate()
    tracking.use_experiment("bench")
    with mlflow.start_run(run_name="bench-ssm" + ("-quick" if a.quick else "")):
        mlflow.log_params({"threads": threads, "reps": reps, "batch": BATCH, "d_inner": D_INNER, "d_state": D_STATE})
        mlflow.log_metrics(metrics)
        mlflow.log_text(scan_table + "\n\n" + model_table, "bench_ssm.md")
    print(f"\nSelective scan fwd+bwd, fp32, batch {BATCH}, d_inner {D_INNER}, d_state {D_STATE}, {threads} threads\n")
    print(scan_table)
    print()
    print(model_table)
    return 0

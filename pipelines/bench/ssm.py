"""Our selective scan and Mamba block against the reference CPU implementation (``mambapy``):
``python -m pipelines.bench ssm [--quick]`` (needs the ``bench`` extra: ``pip install -e .[bench]``).

Sections (all cells in this one process, interleaved so every cell sees the same machine load):

``scan``: the selective scan, forward + backward, fp32, batch 16, d_inner 256, d_state 16, at L = 11, 64, 256,
  1024: our three CPU paths (fused, sequential and chunked parallel; the table says which one ``mode="auto"``
  takes) vs mambapy's parallel scan (Blelloch, padded to a power of two) and its sequential loop, as
  ``mambapy.mamba.MambaBlock`` writes them. Before any timing, every implementation's output and input gradients
  are checked against mambapy's parallel scan at mamba-ssm's fp32 tolerance (a mismatch stops the bench). Median
  over interleaved repeats after one warm-up; a cell whose warm-up took longer than 20 s is timed by that
  run alone. Peak memory of one forward + backward above what was resident before it (the kernel's peak-RSS mark,
  after glibc's ``malloc_trim`` has returned the free pages of earlier cells).

  The bound: this machine's limit for the fused path's work, B·L·D·N x (2 exp + 16 vector multiply-adds) --
  forward 1 exp + 4 (discretise, update, read-out), backward 1 exp + 3 (the chunk's states again) + 9 (adjoint,
  five gradients) -- done by register-resident loops of the kernel's own compiled exp and FMA
  (``core.ssm_fused.limit``) and timed as one more interleaved cell, so it sees the machine load the kernel sees;
  divided by the threads used. "fused / bound" is how far from it we are.

  mambapy's sequential loop grows about as L^2, so it runs up to L = 256 unless ``--sequential-max-len`` says
  more: its forward indexes ``dA[:, t]`` and ``BX[:, t]`` once per step, and the backward of each index
  (``select_backward``) writes a zero tensor of the whole [B, L, D, N] input into which it scatters one step's
  gradient, so the backward moves L x B·L·D·N floats.

``charlm``: the long-sequence model, a char-LM with Mamba mixers at L = 1024: training steps on the fused scan vs
  the pure path, same weights and batches, checked equal first.

``model``: S-Mamba (ETTh1, L = 96, H = 96, the paper's settings) with our Mamba mixers vs the same model with
  mambapy's ``MambaBlock`` holding the same weights (outputs checked equal first): one training step (forward,
  backward, Adam) and inference, median over the same real ETTh1 batches, interleaved.
"""
from __future__ import annotations

import argparse
import ctypes
import itertools
import sys
import time

import torch

from pipelines.bench.sections import add_common, bench_main, check_sections, interleaved_ms, parse_quick
from pipelines.bench.table import markdown

BATCH, D_INNER, D_STATE = 16, 256, 16
LENGTHS = (11, 64, 256, 1024)
RTOL, ATOL = 6e-4, 2e-3  # mamba-ssm tests/ops/test_selective_scan.py, fp32
IMPLS = ("ours_fused", "ours_sequential", "ours_parallel", "mambapy_parallel", "mambapy_sequential")
EXPS, FMAS = 2, 16  # per element of [B, L, D, N], forward + backward (see the docstring)
SLOW_S = 20.0  # a cell whose warm-up takes longer is timed by that run alone


class Mismatch(RuntimeError):
    """Ours and the reference disagree beyond the tolerance: timing them would compare different things."""


def scan_inputs(L: int, batch: int = BATCH, d_inner: int = D_INNER, d_state: int = D_STATE):
    """x, delta [B, L, D]; A [D, N]; B, C [B, L, N]; D [D] (mambapy's layout), fixed seed."""
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.randn(batch, L, d_inner, generator=g), delta=0.5 * torch.rand(batch, L, d_inner, generator=g),
                A=-torch.rand(d_inner, d_state, generator=g), B=torch.randn(batch, L, d_state, generator=g),
                C=torch.randn(batch, L, d_state, generator=g), D=torch.randn(d_inner, generator=g))


def _ours(mode: str):
    from core.ssm import selective_scan

    def f(x, delta, A, B, C, D):  # mamba-ssm layout [B, D, L] in and out
        y = selective_scan(x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
                           mode=mode)
        return y.transpose(1, 2)
    return f


def _mambapy(parallel: bool):
    from mambapy.pscan import pscan

    def f(x, delta, A, B, C, D):  # mambapy.mamba.MambaBlock.selective_scan / selective_scan_seq, as it writes them
        dA = torch.exp(delta.unsqueeze(-1) * A)
        BX = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)
        if parallel:
            hs = pscan(dA, BX)
        else:
            h, hl = torch.zeros(x.shape[0], x.shape[2], A.shape[1]), []
            for t in range(x.shape[1]):
                h = dA[:, t] * h + BX[:, t]
                hl.append(h)
            hs = torch.stack(hl, dim=1)
        return (hs @ C.unsqueeze(-1)).squeeze(3) + D * x
    return f


SCANS = {"ours_fused": lambda: _ours("fused"), "ours_sequential": lambda: _ours("sequential"), "ours_parallel": lambda: _ours("parallel"),
         "mambapy_parallel": lambda: _mambapy(True), "mambapy_sequential": lambda: _mambapy(False)}


def fwd_bwd(impl: str, inputs: dict):
    """One forward + backward of ``impl`` with the gradient of sum(y): returns a closure giving (y, grads)."""
    fn = SCANS[impl]()
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}

    def run():
        for v in leaves.values():
            v.grad = None
        y = fn(**leaves)
        y.sum().backward()
        return y.detach(), {k: v.grad for k, v in leaves.items()}
    return run


def check_same(results: dict, reference: str = "mambapy_parallel") -> dict[str, float]:
    """Per implementation, the worst element of |ours - reference| / (atol + rtol·|reference|) over the output and
    all input gradients (<= 1: within mamba-ssm's fp32 tolerance, as ``torch.allclose``); raises
    :class:`Mismatch` above 1."""
    y_ref, g_ref = results[reference]
    worst = {}
    for impl, (y, g) in results.items():
        ratios = {"y": _ratio(y, y_ref), **{f"grad {k}": _ratio(g[k], g_ref[k]) for k in g_ref}}
        what = max(ratios, key=ratios.get)
        if ratios[what] > 1:
            raise Mismatch(f"{impl} != {reference} at {what}: |diff| up to {ratios[what]:.3g} x the tolerance "
                           f"(rtol {RTOL}, atol {ATOL})")
        worst[impl] = ratios[what]
    return worst


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / (ATOL + RTOL * b.abs())).max())


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _release_free_memory() -> None:
    """glibc ``malloc_trim(0)``: give every free page of the heap back to the kernel, so the next call's allocations
    count in its RSS even where they reuse memory an earlier cell freed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_mb(f) -> float:
    """Peak resident MB above the start during one call of f (the kernel's peak-RSS mark, reset first; Linux)."""
    _release_free_memory()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kb("VmRSS")
    out = f()
    del out
    return (_status_kb("VmHWM") - base) / 1024


def scan_cells(L: int, reps: int, seq_max_len: int = 256) -> dict:
    """Per implementation: ms (median), peak MB, max |diff| to mambapy's parallel scan; and auto's path."""
    from core import ssm_fused
    from core.ssm import PATHS, pick_path

    inputs = scan_inputs(L)
    fused, _ = ssm_fused.available()
    runs = {impl: fwd_bwd(impl, inputs) for impl in IMPLS
            if (impl != "mambapy_sequential" or L <= seq_max_len) and (impl != "ours_fused" or fused)}
    first, mem, results = {}, {}, {}
    for impl, run in runs.items():  # a memory run, then a warm-up whose result is checked and which is timed
        mem[impl] = peak_mb(run)
        t = time.perf_counter()
        results[impl] = run()
        first[impl] = time.perf_counter() - t
    diff = check_same(results)
    del results
    fast = {k: r for k, r in runs.items() if first[k] < SLOW_S}
    if fused:  # the limit of the fused path's work, timed beside it
        work = BATCH * L * D_INNER * D_STATE
        fast["bound"] = lambda: ssm_fused.limit(EXPS * work, FMAS * work)
        fast["bound"]()  # its warm-up (the others' was the checked run)
    ms = interleaved_ms(fast, reps, warmup=0)
    ms.update({k: first[k] * 1e3 for k in runs if k not in fast})
    if "bound" in ms:
        ms["bound"] /= torch.get_num_threads()
    pure = next(k for k, v in PATHS.items() if v is pick_path("auto", L, BATCH * D_INNER * D_STATE))
    return {"ms": ms, "mb": mem, "diff": diff, "auto": "fused" if fused else pure, "pure": pure,
            "once": sorted(set(runs) - set(fast))}


def scan_section(a) -> str:
    rows = []
    for L in (LENGTHS[:2] if a.quick else LENGTHS):
        c = scan_cells(L, a.reps, a.sequential_max_len)
        ms, mb = c["ms"], c["mb"]
        best = min(("mambapy_parallel", "mambapy_sequential"), key=lambda k: ms.get(k, float("inf")))
        ours, pure = f"ours_{c['auto']}", f"ours_{c['pure']}"
        fmt = lambda k: ("not run" if k not in ms  # noqa: E731
                         else f"{ms[k]:.1f}" + (" (1 run)" if k in c["once"] else ""))
        bound = ms.get("bound", float("nan"))
        rows.append([L] + [fmt(k) for k in IMPLS] + [c["auto"], f"{bound:.1f}", f"{ms.get('ours_fused', bound) / bound:.2f}",
                     f"{ms[pure] / ms[ours]:.1f}", f"{ms[ours] / ms[best]:.3f}",
                     f"{mb[ours]:.0f} / {mb[pure]:.0f} / {mb[best]:.0f}", f"{max(c['diff'].values()):.2f}"])
        print(" | ".join(map(str, rows[-1])), flush=True)
    return (f"Selective scan forward + backward, fp32, batch {BATCH}, d_inner {D_INNER}, d_state {D_STATE}; "
            "ms median of interleaved repeats; all outputs and gradients equal mambapy's parallel scan within "
            f"rtol {RTOL} / atol {ATOL} (the last column: the worst element's |diff| / (atol + rtol·|ref|), "
            "<= 1 passes)\n\n"
            + markdown(["L", "ours fused ms", "ours sequential ms", "ours parallel ms", "mambapy parallel ms",
                        "mambapy sequential ms", "auto takes", "bound ms", "fused / bound",
                        "speed-up of auto over the pure path", "auto / best mambapy",
                        "peak MB auto / pure / best mambapy", "worst diff / tolerance"], rows)
            + f"\n\n{torch.get_num_threads()} threads; the pure path is what ``auto`` takes without the fused one.")


def smamba_pair():
    """S-Mamba on ETTh1 with our mixers, and a copy whose mixers are mambapy ``MambaBlock``s with the same weights;
    plus a few real training batches."""
    import copy

    from mambapy.mamba import MambaBlock, MambaConfig

    from apps.forecast.data import ForecastData
    from apps.forecast.models import build_model
    from apps.forecast.presets import preset

    dm = ForecastData("ETTh1")
    dm.setup()
    kw = preset("s_mamba", "ETTh1", 96)["model"]
    torch.manual_seed(0)
    ours = build_model("s_mamba", dm.n_vars, 96, 96, **kw)
    ref = copy.deepcopy(ours)
    cfg = MambaConfig(d_model=kw["d_model"], n_layers=1, d_state=kw["d_state"], expand_factor=1, d_conv=2)
    for blk in ref.encoder.blocks:
        for side in ("fwd", "bwd"):
            mb = MambaBlock(cfg)
            mb.load_state_dict(getattr(blk.mixer, side).state_dict())  # same parameter names and shapes
            setattr(blk.mixer, side, mb)
    return ours, ref, dm


def model_section(a) -> str:
    ours, ref, dm = smamba_pair()
    n = 10 if a.quick else 30
    batches = [b for _, b in zip(range(n), dm.train_dataloader())]
    x, m, _ = batches[0]
    with torch.no_grad():
        ours.eval(), ref.eval()
        y0, y1 = ours(x, m), ref(x, m)
    if not torch.allclose(y0, y1, rtol=RTOL, atol=ATOL):
        raise Mismatch(f"S-Mamba with our mixers != with mambapy's: max |diff| {(y0 - y1).abs().max():.3g}")
    rows = []
    for what in ("train_step", "inference"):
        fns = {}
        for name, model in (("ours", ours), ("mambapy", ref)):
            model.train(what == "train_step")
            opt = torch.optim.Adam(model.parameters(), lr=7e-5)

            def step(model=model, opt=opt, it=itertools.cycle(batches)):
                xb, mb, yb = next(it)
                if model.training:
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(model(xb, mb), yb).backward()
                    opt.step()
                else:
                    with torch.no_grad():
                        model(xb, mb)
            fns[name] = step
        ms = interleaved_ms(fns, n, warmup=2)
        rows.append([what, f"{ms['ours']:.1f}", f"{ms['mambapy']:.1f}", f"{ms['ours'] / ms['mambapy']:.2f}"])
    return (f"S-Mamba, ETTh1, batch {batches[0][0].shape[0]}, L 96, H 96; same weights (outputs equal within "
            f"rtol {RTOL} / atol {ATOL}: max |diff| {(y0 - y1).abs().max():.1e}); median of {n} interleaved steps\n\n"
            + markdown(["S-Mamba ETTh1", "ours ms", "mambapy ms", "ours / mambapy"], rows))


def charlm_section(a) -> str:
    """The char-LM on tiny-shakespeare with Mamba mixers at L = 1024: training steps with the fused scan and with
    the pure path, same weights and batches (the first step's loss and gradients checked equal), interleaved."""
    import copy

    from pipelines.bench.charlm import CharGPT, batches, load_text

    train_data, _, vocab = load_text()
    block, batch = (256, 2) if a.quick else (1024, 4)
    torch.manual_seed(0)
    fused = CharGPT(vocab, block=block, width=128, depth=2, mixer="mamba",
                    mixer_kw={"d_state": D_STATE, "scan_mode": "fused"})
    pure = copy.deepcopy(fused)
    for blk in pure.encoder.blocks:
        blk.mixer.scan_mode = "sequential"
    gen = torch.Generator().manual_seed(0)
    data = [batches(train_data, block, batch, gen) for _ in range(4)]
    models = {"fused": fused, "pure (sequential)": pure}

    def loss(model, xy):
        x, y = xy
        return torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())

    first = {}
    for name, model in models.items():
        model.zero_grad()
        val = loss(model, data[0])
        val.backward()
        first[name] = (val.item(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    (l0, g0), (l1, g1) = first.values()
    if abs(l0 - l1) > 1e-5 or not torch.allclose(g0, g1, rtol=RTOL, atol=ATOL):
        raise Mismatch(f"char-LM: fused and pure steps differ (loss {l0:.6f} vs {l1:.6f})")
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-3) for n, m in models.items()}

    def step(name):
        it = itertools.cycle(data)

        def run():
            opts[name].zero_grad()
            loss(models[name], next(it)).backward()
            opts[name].step()
        return run
    fns = {n: step(n) for n in models}
    mem = {n: peak_mb(f) for n, f in fns.items()}
    ms = interleaved_ms(fns, a.reps, warmup=1)
    rows = [[n, f"{ms[n]:.0f}", f"{ms['pure (sequential)'] / ms[n]:.2f}", f"{mem[n]:.0f}"] for n in models]
    return (markdown(["scan path", "ms / training step", "speed-up over pure", "peak MB"], rows)
            + f"\n\nChar-level LM on tiny-shakespeare, 2 pre-norm blocks of width 128 with Mamba mixers (d_state "
              f"{D_STATE}) and MLP FFNs, L = {block}, batch {batch}, AdamW; one step = forward, backward, update; "
              f"first step's loss equal ({l0:.5f}) and gradients within rtol {RTOL} / atol {ATOL}; median of "
              f"{a.reps} interleaved steps after a warm-up; {torch.get_num_threads()} threads.")


SECTIONS = {"scan": scan_section, "model": model_section, "charlm": charlm_section}


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench ssm", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="L = 11, 64 and fewer repeats")
    ap.add_argument("--sequential-max-len", type=int, default=256,
                    help="run mambapy's sequential loop up to this L (its backward is O(L^2): minutes at 1024)")
    add_common(ap, tuple(SECTIONS), reps=7)
    return check_sections(ap, parse_quick(ap, argv, reps=3), tuple(SECTIONS))


def main(argv: list[str]) -> int:
    a = parse(argv)
    try:
        import mambapy  # noqa: F401
    except ImportError:
        print("error: the ssm benchmark compares against mambapy: pip install -e '.[bench]'", file=sys.stderr)
        return 2

    def check_data():
        if "model" in a.sections:
            from apps.forecast.data import resolve
            resolve("ETTh1")

    try:
        return bench_main("ssm", a, SECTIONS, check_data,
                          {"reps": a.reps, "batch": BATCH, "d_inner": D_INNER, "d_state": D_STATE})
    except Mismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


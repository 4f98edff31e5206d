"""Every CPU selective-scan path equals the loop reference (mamba-ssm's own fp32 tolerance); the fused path equals
the pure one up to L = 4096 and on odd shapes, and passes gradcheck in float64."""
import pytest
import torch

from core.ssm import linear_scan, selective_scan, selective_scan_ref

RTOL, ATOL = 6e-4, 2e-3  # mamba-ssm tests/ops/test_selective_scan.py, fp32


def _inputs(L, batch=2, dim=8, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = lambda *s, scale=1.0: (scale * torch.randn(*s, generator=g)).requires_grad_()  # noqa: E731
    return dict(u=t(batch, dim, L), delta=(0.5 * torch.rand(batch, dim, L, generator=g)).requires_grad_(),
                A=(-0.5 * torch.rand(dim, n, generator=g)).requires_grad_(), B=t(batch, n, L), C=t(batch, n, L),
                D=t(dim), z=t(batch, dim, L), delta_bias=(0.5 * torch.rand(dim, generator=g)).requires_grad_())


@pytest.mark.parametrize("mode", ["sequential", "parallel", "auto", "fused"])
@pytest.mark.parametrize("L", [1, 11, 63, 64, 100])
def test_paths_match_loop_reference(mode, L):
    kw = _inputs(L)
    names = list(kw)
    ref = selective_scan_ref(**kw, delta_softplus=True)
    g = torch.randn_like(ref)
    gref = torch.autograd.grad(ref, [kw[k] for k in names], g)
    out = selective_scan(**kw, delta_softplus=True, mode=mode)
    gout = torch.autograd.grad(out, [kw[k] for k in names], g)
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
    for name, a, b in zip(names, gout, gref):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"grad {name}: {m}")


def test_parallel_path_at_the_lengths_it_serves():
    """L = 1024 with small slices: where ``auto`` picks the parallel scan (values and gradients)."""
    kw = _inputs(1024, batch=1, dim=2, n=2, seed=3)
    names = list(kw)
    ref = selective_scan_ref(**kw, delta_softplus=True)
    g = torch.randn_like(ref)
    gref = torch.autograd.grad(ref, [kw[k] for k in names], g)
    out = selective_scan(**kw, delta_softplus=True, mode="parallel")
    gout = torch.autograd.grad(out, [kw[k] for k in names], g)
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
    for name, a, b in zip(names, gout, gref):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"grad {name}: {m}")


def test_without_optional_terms():
    kw = _inputs(37)
    for k in ("D", "z", "delta_bias"):
        kw.pop(k)
    torch.testing.assert_close(selective_scan(**kw, mode="parallel"), selective_scan_ref(**kw), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("L", [1, 5, 64, 65, 300])
def test_linear_scan_paths_agree(L):
    a, b = torch.rand(L, 3, 4), torch.randn(L, 3, 4)
    h = torch.zeros(3, 4)
    expect = []
    for t in range(L):
        h = a[t] * h + b[t]
        expect.append(h)
    expect = torch.stack(expect)
    for mode in ("sequential", "parallel"):
        torch.testing.assert_close(linear_scan(a, b, mode), expect, rtol=1e-5, atol=1e-5)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown scan mode"):
        selective_scan(**_inputs(4), mode="cuda")


@pytest.mark.parametrize("mode", ["fused", "sequential"])
@pytest.mark.parametrize("name, shape", [("B", (2, 4, 7)), ("C", (2, 3, 11)), ("A", (4, 8)), ("delta", (2, 11, 8)),
                                         ("D", (4,)), ("z", (2, 8, 10)), ("u", (2, 8))])
def test_a_wrong_shape_is_named_before_any_path_reads_it(mode, name, shape):
    """u [B, D, L] = [2, 8, 11]: mamba's [B, L, D] passed as is, or a B/C of another length, would make the fused
    kernel read past the ends of the tensors; it must be refused, naming the argument and the shape expected."""
    kw = _inputs(11)
    kw[name] = torch.randn(*shape)
    with pytest.raises(ValueError, match=f"selective_scan: {name} (has shape|must be)"):
        selective_scan(**kw, mode=mode)


def test_auto_path_choice():
    from core.ssm import _parallel, _sequential, pick_path

    assert pick_path("auto", 11, 16 * 256 * 16) is _sequential
    assert pick_path("auto", 1024, 16 * 256 * 16) is _sequential  # big slices: memory-bound, one pass wins
    assert pick_path("auto", 1024, 2 * 8 * 4) is _parallel  # tiny slices: per-step overhead dominates
    assert pick_path("parallel", 3, 10) is _parallel


def _grads(mode, kw, g):
    out = selective_scan(**kw, delta_softplus=True, mode=mode)
    return [out, *torch.autograd.grad(out, list(kw.values()), g)]


@pytest.mark.parametrize("L,batch,dim,n", [(1, 1, 1, 1), (65, 1, 7, 1), (129, 3, 13, 5), (1000, 2, 9, 16),
                                           (4096, 1, 3, 2), (4096, 2, 33, 17)])
def test_fused_path_equals_the_pure_one_on_odd_shapes_and_long_sequences(L, batch, dim, n):
    """B = 1, N = 1, D and N off the vector width, L across the chunk length (64) up to 4096."""
    kw = _inputs(L, batch, dim, n, seed=L)
    g = torch.randn(batch, dim, L, generator=torch.Generator().manual_seed(1))
    for name, a, b in zip(["y", *kw], _grads("fused", kw, g), _grads("sequential", kw, g)):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")


def test_fused_path_passes_gradcheck_in_float64():
    from core.ssm_fused import FusedSelectiveScan

    kw = {k: v.detach().double().requires_grad_() for k, v in _inputs(70, 2, 3, 2, seed=5).items()}
    delta = torch.nn.functional.softplus(kw["delta"].detach()).requires_grad_()
    assert torch.autograd.gradcheck(FusedSelectiveScan.apply, (kw["u"], delta, kw["A"], kw["B"], kw["C"], kw["D"]))


def test_fused_mode_says_why_it_cannot_run():
    kw = {k: v.detach().half() for k, v in _inputs(4).items()}
    with pytest.raises(RuntimeError, match="float32 / float64"):
        selective_scan(**kw, mode="fused")


def test_fused_path_reads_transposed_inputs_and_an_expanded_gradient_in_place():
    """u, delta as [B, L, D] memory seen as [B, D, L] (Mamba's layout) and the gradient of a sum (stride 0): the
    kernel works through their strides, and gives what the pure path gives on contiguous copies."""
    kw = _inputs(150, 2, 9, 4, seed=9)
    views = {k: (v.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
                 if k in ("u", "delta", "z") else v) for k, v in kw.items()}
    assert not views["u"].is_contiguous()
    fused = selective_scan(**views, delta_softplus=True, mode="fused")
    gf = torch.autograd.grad(fused.sum(), list(views.values()))
    pure = selective_scan(**kw, delta_softplus=True, mode="sequential")
    gp = torch.autograd.grad(pure.sum(), list(kw.values()))
    torch.testing.assert_close(fused, pure, rtol=RTOL, atol=ATOL)
    for name, a, b in zip(kw, gf, gp):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"grad {name}: {m}")

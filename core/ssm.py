"""Selective scan (Gu & Dao 2023, "Mamba", Alg. 2 / ``selective_scan_ref``) on the CPU.

Recurrence, per channel d and state n::

    dA_t = exp(delta_t * A),  dBu_t = delta_t * B_t * u_t
    h_t  = dA_t * h_{t-1} + dBu_t,         y_t = <h_t, C_t> + D * u_t,   y *= silu(z)

:class:`SelectiveScan` is one autograd op for the recurrence and its read-out with a hand-written
backward (the adjoint is the same recurrence run backwards: g_t = C_t gy_t + dA_{t+1} g_{t+1}), so no
per-step autograd graph is built and the only [L, B, D, N] tensors kept are dA and h. The recurrence
itself runs in place, time-major, on one of two CPU paths:

- ``"sequential"``: one fused ``addcmul`` per step (L steps over [B, D, N] slices);
- ``"parallel"``: chunked Hillis-Steele doubling: log2(T) whole-tensor steps inside chunks of length T,
  then a carry pass over the L/T chunk ends.

A third path, ``"fused"`` (:mod:`core.ssm_fused`), is one compiled pass per direction with the state in cache
and O(inputs) memory; ``mode="auto"`` takes it wherever it is built (CPU float32 / float64), and otherwise the
parallel path only where per-step overhead dominates (long sequences with small [B, D, N] slices), see
:func:`pick_path`. :func:`selective_scan_ref` is the plain loop reference the tests compare every path against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 64  # chunk length of the parallel path
PARALLEL_MIN_LEN = 256  # auto: parallel only for sequences at least this long ...
PARALLEL_MAX_SLICE = 4096  # ... whose per-step slice B*D*N is at most this many elements


def _sequential(a: torch.Tensor, h: torch.Tensor) -> None:
    """In place along dim 0: h[t] <- a[t] * h[t-1] + h[t]."""
    for t in range(1, a.shape[0]):
        h[t].addcmul_(a[t], h[t - 1])


def _parallel(a: torch.Tensor, h: torch.Tensor, chunk: int = CHUNK) -> None:
    """Same result as :func:`_sequential` (in place on h), via doubling inside chunks + a carry pass."""
    L, rest = a.shape[0], a.shape[1:]
    T = min(chunk, L)
    nc = -(-L // T)
    pad = nc * T - L
    A = torch.cat([a, a.new_ones((pad, *rest))]) if pad else a.clone()
    H = torch.cat([h, h.new_zeros((pad, *rest))]) if pad else h
    A, H = A.view(nc, T, *rest), H.view(nc, T, *rest)
    k = 1
    while k < T:
        H[:, k:] += A[:, k:] * H[:, :-k]  # the right side is a fresh tensor: no read-after-write overlap
        A[:, k:] = A[:, k:] * A[:, :-k]
        k *= 2
    for c in range(1, nc):  # the state entering chunk c is the corrected last state of chunk c-1
        H[c].addcmul_(A[c], H[c - 1, -1:].expand_as(H[c]))
    if pad:
        h.copy_(H.view(nc * T, *rest)[:L])


PATHS = {"sequential": _sequential, "parallel": _parallel}


def pick_path(mode: str, L: int, slice_numel: int):
    if mode == "auto":
        mode = "parallel" if L >= PARALLEL_MIN_LEN and slice_numel <= PARALLEL_MAX_SLICE else "sequential"
    try:
        return PATHS[mode]
    except KeyError:
        raise ValueError(f"unknown scan mode {mode!r}; use 'auto', 'fused', 'sequential' or 'parallel'") from None


def _fused(mode: str, u: torch.Tensor) -> bool:
    """Whether this call takes the fused path: asked for (an error if it cannot run), or ``auto`` where it can."""
    if mode not in ("fused", "auto"):
        return False
    from core import ssm_fused

    ok, why = ssm_fused.available()
    fits = u.device.type == "cpu" and u.dtype in (torch.float32, torch.float64)
    if mode == "fused" and not (ok and fits):
        raise RuntimeError(f"mode='fused': {why or f'needs CPU float32 / float64 tensors, got {u.dtype} on {u.device}'}")
    return ok and fits


def _reverse(scan, a: torch.Tensor, g: torch.Tensor) -> None:
    """In place, from the end: g[t] <- g[t] + a[t+1] * g[t+1] (the adjoint recurrence)."""
    if scan is _sequential:
        for t in range(g.shape[0] - 2, -1, -1):
            g[t].addcmul_(a[t + 1], g[t + 1])
        return
    a_next = torch.cat([a[1:], a.new_zeros((1, *a.shape[1:]))])
    gf = g.flip(0)
    scan(a_next.flip(0), gf)
    g.copy_(gf.flip(0))


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """[B, C, L] -> contiguous [L, B, C]: every later [L, B, D, N] tensor inherits a dense layout."""
    return x.permute(2, 0, 1).contiguous()


class SelectiveScan(torch.autograd.Function):
    """y[B, D, L] = read-out of the selective recurrence; delta already positive (softplus applied)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, mode: str = "auto"):
        Bn, D, L = u.shape
        N = A.shape[1]
        scan = pick_path(mode, L, Bn * D * N)
        dt, ut = _time_major(delta), _time_major(u)  # [L, B, D]
        Bt, Ct = _time_major(B), _time_major(C)  # [L, B, N]
        dA = torch.exp(dt.unsqueeze(-1) * A)  # [L, B, D, N]
        h = (dt * ut).unsqueeze(-1) * Bt.unsqueeze(2)  # dBu, becomes h in place
        scan(dA, h)
        y = torch.matmul(h, Ct.unsqueeze(-1)).squeeze(-1)  # [L, B, D]
        ctx.scan = scan
        ctx.save_for_backward(dt, ut, A, Bt, Ct, dA, h)  # time-major copies, reused by backward
        return y.permute(1, 2, 0)

    @staticmethod
    def backward(ctx, gy):
        dt, ut, A, Bt, Ct, dA, h = ctx.saved_tensors  # [L, B, D] x2, [D, N], [L, B, N] x2, [L, B, D, N] x2
        gyt = _time_major(gy)  # [L, B, D]
        gC = torch.matmul(gyt.unsqueeze(-2), h).squeeze(-2)  # [L, B, N]
        G = gyt.unsqueeze(-1) * Ct.unsqueeze(2)  # dL/dh_t from the read-out, [L, B, D, N]
        _reverse(ctx.scan, dA, G)  # G_t = dL/dh_t = dL/d(dBu_t)
        GB = torch.matmul(G, Bt.unsqueeze(-1)).squeeze(-1)  # sum_n G * B, [L, B, D]
        gB = torch.matmul((dt * ut).unsqueeze(-2), G).squeeze(-2)  # [L, B, N]
        # G becomes dL/d(delta*A) through exp: G_t * h_{t-1} * dA_t (in place: G is not needed any more)
        T1 = G.mul_(dA)
        T1[0].zero_()
        T1[1:].mul_(h[:-1])
        g_dt = (T1 * A).sum(-1) + ut * GB
        g_u = dt * GB
        gA = T1.mul_(dt.unsqueeze(-1)).sum((0, 1))
        return (g_u.permute(1, 2, 0), g_dt.permute(1, 2, 0), gA, gB.permute(1, 2, 0), gC.permute(1, 2, 0), None)


def linear_scan(a: torch.Tensor, b: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """h[t] = a[t] * h[t-1] + b[t] along dim 0 (h[-1] = 0), without autograd. a, b: [L, ...]."""
    h = b.clone()
    pick_path(mode, a.shape[0], a[0].numel())(a.contiguous(), h)
    return h


def check_shapes(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """ValueError naming the first argument whose shape is not the layout of :func:`selective_scan`: u [B, D, L],
    delta and z like u, A [D, N], B and C [B, N, L], D and delta_bias [D]. The fused kernel reads raw memory at
    these sizes, so a wrong shape must stop here."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be [batch, channels, length], got shape {tuple(u.shape)}")
    b, d, length = u.shape
    n = A.shape[-1] if A.dim() == 2 else -1
    want = {"delta": (b, d, length), "A": (d, n), "B": (b, n, length), "C": (b, n, length), "D": (d,),
            "z": (b, d, length), "delta_bias": (d,)}
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != want[name]:
            shown = tuple("N" if v == -1 else v for v in want[name])
            raise ValueError(f"selective_scan: {name} has shape {tuple(t.shape)}, expected {shown} for u of shape "
                             f"{tuple(u.shape)} [batch, channels, length] and A of shape {tuple(A.shape)} "
                             f"[channels, state]")


def _prepare(delta, delta_bias, delta_softplus):
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    return F.softplus(delta) if delta_softplus else delta


def _output(y, u, D, z):
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   mode: str = "auto"):
    """Mamba's selective scan; the signature of ``mamba_ssm.selective_scan_fn``.

    u, delta, z: [B, D, L]; A: [D, N]; B, C: [B, N, L]; D, delta_bias: [D]. Returns y: [B, D, L].
    mode: auto, fused, sequential or parallel (see the module docstring).
    """
    check_shapes(u, delta, A, B, C, D, z, delta_bias)
    delta = _prepare(delta, delta_bias, delta_softplus)
    if _fused(mode, u):
        from core.ssm_fused import FusedSelectiveScan

        y = FusedSelectiveScan.apply(u, *(t.to(u.dtype) for t in (delta, A, B, C)),
                                     None if D is None else D.to(u.dtype))  # D u is added inside
        return _output(y, u, None, z)
    y = SelectiveScan.apply(u, delta, A, B, C, mode)
    return _output(y, u, D, z)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Plain per-step loop, autograd throughout: the reference both CPU paths are tested against."""
    delta = _prepare(delta, delta_bias, delta_softplus)
    dA = torch.exp(delta.unsqueeze(-1) * A[:, None])  # [B, D, L, N]
    dBu = (delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)  # [B, D, L, N]
    h = torch.zeros_like(dBu[:, :, 0])
    ys = []
    for t in range(u.shape[-1]):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return _output(torch.stack(ys, dim=-1), u, D, z)

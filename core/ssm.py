"""Selective scan (Gu & Dao 2023, "Mamba", Alg. 2 / ``selective_scan_ref``) on the CPU.

Recurrence, per channel d and state n::

    dA_t = exp(delta_t * A),  dBu_t = delta_t * B_t * u_t
    h_t  = dA_t * h_{t-1} + dBu_t,         y_t = <h_t, C_t> + D * u_t,   y *= silu(z)

The linear recurrence ``h_t = a_t h_{t-1} + b_t`` is one autograd op (:class:`LinearScan`) with two
CPU paths and a hand-written backward (itself a reversed scan, so memory stays O(L)):

- ``"sequential"``: one fused ``addcmul`` per step, L steps;
- ``"parallel"``: chunked Hillis-Steele doubling scan: log2(T) vectorised steps inside chunks of
  length T, then a carry pass over the L/T chunk ends.

``mode="auto"`` picks by length (:data:`PARALLEL_FROM`). :func:`selective_scan_ref` is the plain loop
reference the tests compare both paths against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PARALLEL_FROM = 32  # L at and above which "auto" uses the parallel path
CHUNK = 64  # chunk length of the parallel path


def _scan_sequential(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h[t] = a[t] * h[t-1] + b[t] along dim 0, h[-1] = 0."""
    h = torch.empty_like(b)
    h[0] = b[0]
    for t in range(1, a.shape[0]):
        torch.addcmul(b[t], a[t], h[t - 1], out=h[t])
    return h


def _doubling(a: torch.Tensor, h: torch.Tensor) -> None:
    """In place along dim 1 (inside chunks): h <- inclusive scan, a <- cumulative product."""
    n, k = a.shape[1], 1
    while k < n:
        h[:, k:] += a[:, k:] * h[:, :-k]  # right side is a fresh tensor: no read-after-write overlap
        a[:, k:] = a[:, k:] * a[:, :-k]
        k *= 2


def _scan_parallel(a: torch.Tensor, b: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Same result as :func:`_scan_sequential`, via doubling inside chunks + a carry pass."""
    L = a.shape[0]
    T = min(chunk, L)
    nc = -(-L // T)
    pad = nc * T - L
    rest = a.shape[1:]
    if pad:
        a = torch.cat([a, a.new_ones((pad, *rest))])
        b = torch.cat([b, b.new_zeros((pad, *rest))])
    A = a.reshape(nc, T, *rest).clone()
    H = b.reshape(nc, T, *rest).clone()
    _doubling(A, H)
    # carry: the state entering chunk c is the corrected last state of chunk c-1
    for c in range(1, nc):
        H[c].addcmul_(A[c], H[c - 1, -1:].expand_as(H[c]))
    return H.reshape(nc * T, *rest)[:L]


_PATHS = {"sequential": _scan_sequential, "parallel": _scan_parallel}


def _pick(mode: str, L: int):
    if mode == "auto":
        mode = "parallel" if L >= PARALLEL_FROM else "sequential"
    try:
        return _PATHS[mode]
    except KeyError:
        raise ValueError(f"unknown scan mode {mode!r}; use 'auto', 'sequential' or 'parallel'") from None


class LinearScan(torch.autograd.Function):
    """h = scan(a, b) with h[t] = a[t] h[t-1] + b[t] along dim 0; a, b: [L, ...]."""

    @staticmethod
    def forward(ctx, a, b, mode: str = "auto"):
        scan = _pick(mode, a.shape[0])
        with torch.no_grad():
            h = scan(a.contiguous(), b.contiguous())
        ctx.scan = scan
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, gh):
        a, h = ctx.saved_tensors
        # g[t] = gh[t] + a[t+1] g[t+1]: a scan over the reversed sequence with a shifted by one
        a_next = torch.cat([a[1:], a.new_zeros((1, *a.shape[1:]))])
        g = ctx.scan(a_next.flip(0).contiguous(), gh.flip(0).contiguous()).flip(0)
        h_prev = torch.cat([h.new_zeros((1, *h.shape[1:])), h[:-1]])
        return g * h_prev, g, None


def linear_scan(a: torch.Tensor, b: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """h[t] = a[t] * h[t-1] + b[t] along dim 0 (h[-1] = 0). a, b: [L, ...] -> h: [L, ...]."""
    return LinearScan.apply(a, b, mode)


def _discretise(u, delta, A, B, delta_bias, delta_softplus):
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    dt = delta.permute(2, 0, 1)  # [L, B, D]
    dA = torch.exp(dt.unsqueeze(-1) * A)  # [L, B, D, N]
    dBu = (dt * u.permute(2, 0, 1)).unsqueeze(-1) * B.permute(2, 0, 1).unsqueeze(2)  # [L, B, D, N]
    return dA, dBu


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
    """
    dA, dBu = _discretise(u, delta, A, B, delta_bias, delta_softplus)
    h = linear_scan(dA, dBu, mode)  # [L, B, D, N]
    y = torch.matmul(h, C.permute(2, 0, 1).unsqueeze(-1)).squeeze(-1)  # [L, B, D]
    return _output(y.permute(1, 2, 0), u, D, z)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Plain per-step loop, autograd throughout: the reference both CPU paths are tested against."""
    dA, dBu = _discretise(u, delta, A, B, delta_bias, delta_softplus)
    h = torch.zeros_like(dBu[0])
    ys = []
    for t in range(u.shape[-1]):
        h = dA[t] * h + dBu[t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return _output(torch.stack(ys, dim=-1), u, D, z)

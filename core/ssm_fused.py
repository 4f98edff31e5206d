"""The fused CPU selective scan: ``core/ssm_fused.c`` compiled once per machine, called through ctypes.

Forward and backward each run one pass over the inputs, a vector of channels at a time (lanes over channels), with
the states kept in registers and cache and exp(delta A) computed on the fly; only the state entering every
``CHUNK``-th step is stored, and the backward pass recomputes a chunk's states from it (as mamba-ssm's CUDA kernel
recomputes them). Memory is O(B L (D + N)) plus B D N L / CHUNK, against the O(B L D N) of
:class:`core.ssm.SelectiveScan`. Threads: ``torch.get_num_threads()``.

Build: ``gcc -O3 -march=native -ffast-math -fopenmp-simd`` (GCC vector extensions, an inline exp for float32,
libm's for float64, pthreads, no OpenMP runtime) into ``$FFN_CACHE/ssm_fused/<hash>.so``;
``python -m core.ssm_fused`` builds it ahead (the README's setup does). Without a C compiler :func:`available` says
why, ``mode="auto"`` keeps the pure-PyTorch path and ``mode="fused"`` raises.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CHUNK = 64  # steps between stored states
SOURCE = Path(__file__).with_name("ssm_fused.c")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC", "-shared", "-pthread"]
_TYPES = {torch.float32: "f32", torch.float64: "f64"}
_lib: ctypes.CDLL | None = None
_error: str | None = None


def _wrapper() -> str:
    """Both precisions in one library: the kernel file included twice."""
    parts = []
    for real, suf, exp, extra in (("float", "f32", "expf", "#define POLY_EXP 1\n"), ("double", "f64", "exp", "")):
        parts.append(f"#define REAL {real}\n#define SUF(name) name##_{suf}\n#define EXP {exp}\n{extra}"
                     f'#include "{SOURCE.name}"\n#undef REAL\n#undef SUF\n#undef EXP\n')
    return "".join(parts)


def library_path() -> Path:
    key = hashlib.sha256((SOURCE.read_text() + " ".join(FLAGS) + platform.machine() + platform.node()).encode())
    root = Path(os.environ.get("FFN_CACHE") or Path.home() / ".cache" / "ffn")
    return root / "ssm_fused" / f"{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the kernel for this machine (once; cached by source, flags and host) -> the library's path."""
    out = library_path()
    if out.exists() and not force:
        return out
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc) on PATH to build the fused selective scan")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "wrapper.c"
        src.write_text(_wrapper())
        part = Path(tmp) / out.name
        res = subprocess.run([cc, *FLAGS, f"-I{SOURCE.parent}", str(src), "-o", str(part), "-lm"],
                             capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"building {SOURCE} failed:\n{res.stderr[-2000:]}")
        os.replace(part, out)  # atomic: concurrent builders leave one whole file
    return out


def _load() -> ctypes.CDLL:
    global _lib, _error
    if _lib is None and _error is None:
        try:
            lib = ctypes.CDLL(str(build()))
        except (RuntimeError, OSError) as e:
            _error = str(e)
            raise
        P, L_, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        for suf in _TYPES.values():
            getattr(lib, f"ssm_forward_{suf}").argtypes = [P] * 9 + [L_] * 5 + [I]
            getattr(lib, f"ssm_backward_{suf}").argtypes = [P] * 15 + [L_] * 6 + [I]
            getattr(lib, f"vector_width_{suf}").restype = L_
            for peak in ("peak_exp", "peak_fma"):
                fn = getattr(lib, f"{peak}_{suf}")
                fn.argtypes, fn.restype = [L_], ctypes.c_float if suf == "f32" else ctypes.c_double
        _lib = lib
    if _lib is None:
        raise RuntimeError(_error)
    return _lib


def available() -> tuple[bool, str]:
    """-> (usable, why not)."""
    try:
        _load()
        return True, ""
    except (RuntimeError, OSError) as e:
        return False, str(e)


@functools.cache
def vector_width(dtype: torch.dtype = torch.float32) -> int:
    """Channels per vector (the lanes a task advances together): 16 float32 with AVX-512, 8 with AVX2."""
    return getattr(_load(), f"vector_width_{_TYPES[dtype]}")()


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if its elements tile its memory in some dimension order (a transposed view does), else a
    contiguous copy: the kernel reads and writes [B, D, L] through strides, so [B, L, D] inputs need no copy."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz > 1):
        if stride != expected:
            return t.contiguous()
        expected *= size
    return t


def _like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype)


def _strides(*ts: torch.Tensor) -> torch.Tensor:
    return torch.tensor([s for t in ts for s in t.stride()], dtype=torch.long)


def _suffix(t: torch.Tensor) -> str:
    if t.dtype not in _TYPES or t.device.type != "cpu":
        raise TypeError(f"the fused scan runs on CPU float32 / float64 tensors, got {t.dtype} on {t.device}")
    return _TYPES[t.dtype]


class FusedSelectiveScan(torch.autograd.Function):
    """y[B, D, L] = scan + D u from u, delta [B, D, L] (delta positive), A [D, N], B, C [B, N, L], D [D] or None:
    as :class:`core.ssm.SelectiveScan` plus the skip term, in O(inputs) memory."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D=None):
        lib, suf = _load(), _suffix(u)
        u, delta, A = _dense(u), _dense(delta), A.contiguous()
        Bt, Ct = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # [B, L, N]
        Dv = u.new_zeros(u.shape[1]) if D is None else D.contiguous()
        b, d, L = u.shape
        n = A.shape[1]
        y = _like(u)
        vw = vector_width(u.dtype)
        ckpt = u.new_empty(b, -(-d // vw), -(-L // CHUNK), n, vw)
        strides = _strides(u, delta)
        getattr(lib, f"ssm_forward_{suf}")(*map(_ptr, (u, delta, A, Bt, Ct, Dv, y, ckpt, strides)), b, d, L, n,
                                           CHUNK, torch.get_num_threads())
        ctx.save_for_backward(u, delta, A, Bt, Ct, Dv, ckpt)
        ctx.has_d = D is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, Bt, Ct, Dv, ckpt = ctx.saved_tensors
        lib, suf = _load(), _suffix(u)
        b, d, L = u.shape
        n, threads = A.shape[1], torch.get_num_threads()
        # gB / gC slices: tasks enough for the threads
        parts = max(1, min(-(-d // vector_width(u.dtype)), -(-2 * threads // b)))
        gy = gy if gy.dtype == u.dtype else gy.to(u.dtype)  # read through its strides (an expanded one too)
        gu, gdt, gA, gD = _like(u), _like(delta), u.new_empty(b, d, n), u.new_empty(b, d)
        gB, gC = u.new_zeros(b, parts, L, n), u.new_zeros(b, parts, L, n)
        strides = _strides(u, delta, gy)
        getattr(lib, f"ssm_backward_{suf}")(*map(_ptr, (u, delta, A, Bt, Ct, Dv, ckpt, gy, gu, gdt, gA, gB, gC,
                                                        gD, strides)), b, d, L, n, CHUNK, parts, threads)
        return (gu, gdt, gA.sum(0), gB.sum(1).transpose(1, 2), gC.sum(1).transpose(1, 2),
                gD.sum(0) if ctx.has_d else None)


def limit(exps: int, fmas: int) -> None:
    """Do ``exps`` float32 exponentials and ``fmas`` multiply-adds the fastest way this machine can: the kernel's
    own vectorised exp and FMA, register-resident, on one thread. Timed beside the kernel, it is the limit the
    kernel's work could reach under the same machine load."""
    lib, lanes = _load(), 8 * vector_width()
    lib.peak_exp_f32(-(-exps // lanes))
    lib.peak_fma_f32(-(-fmas // lanes))


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))

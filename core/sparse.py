"""A fixed sparse matrix times a dense one, with a cheap backward: ``SparseOperator(A) @ X``.

torch's CSR ``A @ X`` is fast forward but its autograd path for ``X`` is slow on CPU (it falls back to dense-ish
kernels). Here ``A`` and ``A^T`` are both stored as CSR once, and the backward is the CSR product ``A^T @ dY``
(Cora's 1.3 %-dense features through a GCN layer: ``python -m pipelines.bench graph --sections speed``, the
sparse-features row). Dropout on the stored values (Kipf & Welling's sparse input dropout) keeps the two copies
consistent through a fixed value permutation. No gradient flows to ``A``'s values.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def quiet_csr():
    """Silence torch's "Sparse CSR tensor support is in beta" inside this block only (the caller's warning filters
    are left as they were)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        yield


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, a_t, x):
        ctx.a_t = a_t
        return a @ x

    @staticmethod
    def backward(ctx, g):
        return None, None, ctx.a_t @ g.contiguous()


class SparseOperator:
    """A sparse [M, K] matrix kept as CSR and transposed CSR. ``op @ x[K, D] -> [M, D]`` (differentiable in x)."""

    def __init__(self, indices: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]):
        coo = torch.sparse_coo_tensor(indices, values, shape).coalesce()
        self.shape = tuple(shape)
        self._rows, self._cols = coo.indices()
        self.values = coo.values()
        # order of the same nonzeros in A^T's CSR (sorted by column, then row)
        self._perm = torch.argsort(self._cols * shape[0] + self._rows)
        with quiet_csr():
            self.a = torch.sparse_coo_tensor(coo.indices(), self.values, shape).to_sparse_csr()
            self.a_t = self._transpose(self.values)

    @classmethod
    def from_dense(cls, m: torch.Tensor) -> "SparseOperator":
        idx = m.nonzero().t()
        return cls(idx, m[idx[0], idx[1]], tuple(m.shape))

    def _transpose(self, values):
        idx = torch.stack([self._cols[self._perm], self._rows[self._perm]])
        return torch.sparse_coo_tensor(idx, values[self._perm], self.shape[::-1]).to_sparse_csr()

    def with_values(self, values: torch.Tensor) -> "SparseOperator":
        """Same sparsity pattern, new values (no re-sorting)."""
        out = object.__new__(SparseOperator)
        out.shape, out._rows, out._cols, out._perm, out.values = self.shape, self._rows, self._cols, self._perm, values
        with quiet_csr():
            out.a = torch.sparse_csr_tensor(self.a.crow_indices(), self.a.col_indices(), values, self.shape)
            out.a_t = torch.sparse_csr_tensor(self.a_t.crow_indices(), self.a_t.col_indices(), values[self._perm],
                                              self.shape[::-1])
        return out

    def dropout(self, p: float, training: bool = True) -> "SparseOperator":
        if not training or p == 0.0:
            return self
        return self.with_values(F.dropout(self.values, p, True))

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return _SpMM.apply(self.a, self.a_t, x)
        return self.a @ x

    def to_dense(self) -> torch.Tensor:
        return self.a.to_dense()

    @property
    def nnz(self) -> int:
        return self.values.numel()

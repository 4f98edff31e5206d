"""SparseOperator: products and gradients equal the dense computation; dropout keeps A and A^T consistent."""
import torch

from core.sparse import SparseOperator


def _random_sparse(m=37, k=23, density=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(m, k, generator=g) * (torch.rand(m, k, generator=g) < density)


def test_matmul_and_gradient_equal_dense():
    a = _random_sparse()
    op = SparseOperator.from_dense(a)
    x = torch.randn(23, 5, dtype=torch.float32, requires_grad=True)
    y = op @ x
    torch.testing.assert_close(y, a @ x.detach())
    g = torch.randn_like(y)
    (y * g).sum().backward()
    torch.testing.assert_close(x.grad, a.t() @ g)
    assert op.nnz == int((a != 0).sum())


def test_dropout_masks_a_and_its_transpose_identically():
    op = SparseOperator.from_dense(_random_sparse(density=0.5))
    torch.manual_seed(1)
    d = op.dropout(0.5, training=True)
    dense = d.to_dense()
    torch.testing.assert_close(d.a_t.to_dense(), dense.t())
    dropped = (dense == 0) & (op.to_dense() != 0)
    assert 0 < int(dropped.sum()) < op.nnz  # some, not all, entries dropped; the kept ones scaled by 2
    kept = dense != 0
    torch.testing.assert_close(dense[kept], 2 * op.to_dense()[kept])
    assert op.dropout(0.5, training=False) is op

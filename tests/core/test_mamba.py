"""Mamba module: the reference layout, causality, and the bidirectional form."""
import math

import torch
import torch.nn.functional as F

from core.mamba import BiMamba, Mamba
from core.ssm import selective_scan_ref


def test_reference_layout():
    m = Mamba(40, d_state=8, d_conv=3, expand=2)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert m.dt_rank == math.ceil(40 / 16) == 3
    assert shapes == {
        "in_proj.weight": (160, 40), "conv1d.weight": (80, 1, 3), "conv1d.bias": (80,),
        "x_proj.weight": (3 + 16, 80), "dt_proj.weight": (80, 3), "dt_proj.bias": (80,),
        "A_log": (80, 8), "D": (80,), "out_proj.weight": (40, 80),
    }
    torch.testing.assert_close(m.A_log.exp()[0], torch.arange(1.0, 9.0))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6  # softplus(bias) recovers dt in [dt_min, dt_max]


def _loop_forward(m, x):
    """The module's math spelled out with the loop reference scan."""
    L = x.shape[1]
    xi, z = m.in_proj(x).chunk(2, -1)
    xi = F.silu(m.conv1d(xi.transpose(1, 2))[..., :L])
    dt, B, C = m.x_proj(xi.transpose(1, 2)).split([m.dt_rank, m.d_state, m.d_state], -1)
    y = selective_scan_ref(xi, (dt @ m.dt_proj.weight.T).transpose(1, 2), -m.A_log.exp(), B.transpose(1, 2),
                           C.transpose(1, 2), m.D, z.transpose(1, 2), m.dt_proj.bias, True)
    return m.out_proj(y.transpose(1, 2))


def test_forward_equals_loop_reference_both_paths():
    x = torch.randn(2, 70, 16)
    for mode in ("sequential", "parallel"):
        m = Mamba(16, d_state=4, scan_mode=mode)
        torch.manual_seed(1)
        torch.testing.assert_close(m(x), _loop_forward(m, x), rtol=6e-4, atol=2e-3)


def test_causal():
    m = Mamba(16, d_state=4)
    x = torch.randn(1, 20, 16)
    x2 = x.clone()
    x2[:, 12:] += torch.randn(1, 8, 16)
    torch.testing.assert_close(m(x)[:, :12], m(x2)[:, :12])


def test_bimamba_is_forward_plus_flipped_backward():
    m = BiMamba(16, d_state=2, d_conv=2, expand=1)
    x = torch.randn(3, 11, 16)
    torch.testing.assert_close(m(x), m.fwd(x) + m.bwd(x.flip(1)).flip(1))
    x2 = x.clone()
    x2[:, -1] += 1.0  # the backward direction sees the future: the first output changes
    assert not torch.allclose(m(x)[:, 0], m(x2)[:, 0])

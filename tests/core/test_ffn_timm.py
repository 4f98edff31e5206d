"""Our MLP / GLU / SwiGLU against timm's ``layers`` (the reference implementations) with shared weights."""
import pytest
import torch
from timm.layers import GluMlp, Mlp as TimmMlp, SwiGLU as TimmSwiGLU
from torch import nn

from core.ffn import GLU, Mlp, SwiGLU


def _x():
    return torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("act", [nn.GELU, nn.ReLU])
def test_mlp_equals_timm_mlp(act):
    ours, ref = Mlp(12, hidden=40, out=7, act=act).eval(), TimmMlp(12, 40, 7, act_layer=act).eval()
    ours.load_state_dict(ref.state_dict())  # same parameter names: fc1, fc2
    torch.testing.assert_close(ours(_x()), ref(_x()))


def test_glu_equals_timm_glumlp():
    # timm's GluMlp: fc1 -> [x1 | x2], x1 * act(x2); ours: fc1 -> [gate | value], act(gate) * value
    ref = GluMlp(12, hidden_features=2 * 24, out_features=7, act_layer=nn.Sigmoid).eval()
    ours = GLU(12, hidden=24, out=7, act=nn.Sigmoid).eval()
    w, b = ref.fc1.weight.detach(), ref.fc1.bias.detach()
    with torch.no_grad():
        ours.fc1.weight.copy_(torch.cat([w[24:], w[:24]]))
        ours.fc1.bias.copy_(torch.cat([b[24:], b[:24]]))
        ours.fc2.load_state_dict(ref.fc2.state_dict())
    torch.testing.assert_close(ours(_x()), ref(_x()))


def test_swiglu_equals_timm_swiglu():
    ref = TimmSwiGLU(12, hidden_features=24, out_features=7).eval()  # fc1_g, fc1_x, act(g) * x, fc2
    ours = SwiGLU(12, hidden=24, out=7).eval()
    with torch.no_grad():
        ours.fc1.weight.copy_(torch.cat([ref.fc1_g.weight, ref.fc1_x.weight]))
        ours.fc1.bias.copy_(torch.cat([ref.fc1_g.bias, ref.fc1_x.bias]))
        ours.fc2.load_state_dict(ref.fc2.state_dict())
    torch.testing.assert_close(ours(_x()), ref(_x()))

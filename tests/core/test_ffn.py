"""FFN contract: one constructor for every variant, any leading dims, equal to a dense reference."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.ffn import FFN, build_ffn, collect_aux_loss, reparam_model


@pytest.mark.parametrize("name", sorted(FFN))
@pytest.mark.parametrize("lead", [(5,), (2, 3), (2, 3, 4)])
def test_shapes_any_leading_dims(name, lead):
    m = build_ffn(name, 16, hidden=24, out=8)
    assert m(torch.randn(*lead, 16)).shape == (*lead, 8)


@pytest.mark.parametrize("name", sorted(FFN))
def test_defaults_keep_width(name):
    assert build_ffn(name, 12)(torch.randn(3, 12)).shape == (3, 12)


def test_mlp_equals_dense_formula():
    m = build_ffn("mlp", 8, hidden=32, act="relu").eval()
    x = torch.randn(4, 8)
    ref = F.linear(F.relu(F.linear(x, m.fc1.weight, m.fc1.bias)), m.fc2.weight, m.fc2.bias)
    torch.testing.assert_close(m(x), ref)


@pytest.mark.parametrize("name,gate", [("glu", torch.sigmoid), ("swiglu", F.silu)])
def test_glu_family_equals_dense_formula(name, gate):
    m = build_ffn(name, 8, hidden=16).eval()
    x = torch.randn(4, 8)
    w, v = m.fc1.weight[:16], m.fc1.weight[16:]
    bw, bv = m.fc1.bias[:16], m.fc1.bias[16:]
    ref = F.linear(gate(F.linear(x, w, bw)) * F.linear(x, v, bv), m.fc2.weight, m.fc2.bias)
    torch.testing.assert_close(m(x), ref)


def test_registry_errors_name_the_choices():
    with pytest.raises(ValueError, match="unknown FFN variant 'nope'.*mlp"):
        build_ffn("nope", 4)
    with pytest.raises(ValueError, match="unknown activation"):
        build_ffn("mlp", 4, act="bogus")


def test_aux_loss_collection_and_reparam_guard():
    m = nn.Sequential(build_ffn("mlp", 4), build_ffn("mlp", 4))
    assert collect_aux_loss(m) == 0.0
    m[0].aux_loss = torch.tensor(0.5)
    m[1].aux_loss = torch.tensor(0.25)
    assert float(collect_aux_loss(m)) == pytest.approx(0.75)
    with pytest.raises(RuntimeError, match="eval"):
        reparam_model(m.train())

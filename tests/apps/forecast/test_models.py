"""Forecast models: shapes, RevIN round trip, the FFN swap, and the paper presets."""
import pytest
import torch

from apps.forecast.models import RevIN, build_model, canonical
from apps.forecast.presets import preset, published


@pytest.mark.parametrize("name,kw", [("s_mamba", {"d_model": 32, "d_ff": 32, "d_state": 2}),
                                     ("itransformer", {"d_model": 32, "d_ff": 32, "n_heads": 4}),
                                     ("rlinear", {})])
def test_shapes_with_and_without_time_marks(name, kw):
    m = build_model(name, n_vars=7, lookback=48, horizon=24, **kw)
    assert m(torch.randn(3, 48, 7), torch.randn(3, 48, 4)).shape == (3, 24, 7)
    assert m(torch.randn(3, 48, 7)).shape == (3, 24, 7)


@pytest.mark.parametrize("marks", [False, True])
def test_itransformer_is_equivariant_to_permuting_variates(marks):
    """iTransformer's defining property: each variate is a token, with no order among them."""
    torch.manual_seed(0)
    m = build_model("itransformer", n_vars=5, lookback=32, horizon=8, d_model=16, d_ff=16, n_heads=2).eval()
    x, mk = torch.randn(2, 32, 5), (torch.randn(2, 32, 4) if marks else None)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(m(x[..., perm], mk), m(x, mk)[..., perm], rtol=1e-5, atol=1e-5)


def test_revin_round_trip_and_scale_invariance():
    rev = RevIN(5, affine=True)
    x = 10 * torch.randn(4, 30, 5) + 3
    z, stats = rev.norm(x)
    torch.testing.assert_close(rev.denorm(z, stats), x, rtol=1e-4, atol=1e-4)
    m = build_model("rlinear", 5, 30, 10).eval()
    torch.testing.assert_close(m(2 * x + 7), 2 * m(x) + 7, rtol=1e-4, atol=1e-3)


def test_ffn_swap_reaches_every_encoder_layer():
    m = build_model("s_mamba", 7, 48, 24, d_model=32, d_ff=64, ffn="swiglu", e_layers=3)
    assert [type(b.ffn).__name__ for b in m.encoder.blocks] == ["SwiGLU"] * 3
    assert m.encoder.blocks[0].ffn.fc2.in_features == 64


def test_s_mamba_uses_paper_mixer_settings():
    m = build_model("s_mamba", 7, 96, 96, **preset("s_mamba", "ETTh1", 96)["model"])
    fwd = m.encoder.blocks[0].mixer.fwd
    assert (fwd.d_inner, fwd.d_state, fwd.d_conv, fwd.dt_rank) == (256, 2, 2, 16)


def test_model_aliases_and_published_lookup():
    assert published("rlinear", "ETTh1", 96, lookback=336) is None  # no published cell: no comparison is made
    assert canonical("S-Mamba") == "s_mamba"
    with pytest.raises(ValueError, match="unknown forecast model"):
        canonical("informer")

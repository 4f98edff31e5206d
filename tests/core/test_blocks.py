"""Blocks: post-norm and pre-norm residual formulas, mixers by name, FFN by name."""
import pytest
import torch

from core.blocks import Block, Encoder


@pytest.mark.parametrize("mixer", ["attention", "mamba", "bimamba", "none"])
def test_shapes(mixer):
    blk = Block(32, mixer=mixer, heads=4, d_state=4)
    assert blk(torch.randn(2, 9, 32)).shape == (2, 9, 32)


def test_post_norm_formula():
    blk = Block(16, mixer="attention", heads=2, hidden=32).eval()
    x = torch.randn(2, 5, 16)
    h = blk.norm1(x + blk.mixer(x))
    torch.testing.assert_close(blk(x), blk.norm2(h + blk.ffn(h)))


def test_pre_norm_formula():
    blk = Block(16, mixer="mamba", norm="pre", d_state=4).eval()
    x = torch.randn(2, 5, 16)
    h = x + blk.mixer(blk.norm1(x))
    torch.testing.assert_close(blk(x), h + blk.ffn(blk.norm2(h)))


def test_ffn_is_swappable_by_name():
    enc = Encoder(2, 16, mixer="attention", heads=2, ffn="swiglu", hidden=24)
    assert type(enc.blocks[0].ffn).__name__ == "SwiGLU"
    assert enc(torch.randn(1, 4, 16)).shape == (1, 4, 16)


def test_bad_names():
    with pytest.raises(ValueError, match="unknown mixer"):
        Block(8, mixer="rnn")
    with pytest.raises(ValueError, match="norm must be"):
        Block(8, norm="sandwich")

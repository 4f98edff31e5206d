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


def test_drop_path_is_stochastic_depth_and_identity_in_eval():
    torch.manual_seed(0)
    enc = Encoder(3, 16, mixer="none", drop_path=0.5, hidden=32)
    assert [float(b.drop_path.drop_prob) for b in enc.blocks[1:]] == [0.25, 0.5]  # linear in depth, block 0 none
    blk = Block(16, mixer="none", hidden=32, norm="pre", drop_path=0.5)
    x = torch.randn(64, 4, 16)
    blk.train()
    branch = blk(x) - x  # per sample: dropped (exactly 0) or kept and scaled by 2
    dropped = branch.flatten(1).abs().amax(1) == 0
    assert 0 < int(dropped.sum()) < 64
    blk.eval()
    torch.testing.assert_close(blk(x), x + blk.ffn(blk.norm2(x)))

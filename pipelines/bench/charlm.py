"""A character-level GPT on tiny-shakespeare from ``core`` blocks, for comparing FFN variants.

nanoGPT's CPU recipe (README "I only have a macbook"): 4 layers, 4 heads, width 128, block 64, batch 12,
dropout 0, AdamW lr 1e-3 (betas 0.9/0.99, weight decay 0.1), 100 warm-up steps, cosine decay to 1e-4
over ``iters``, grad clip 1.0, 90/10 character split; nanoGPT reports val loss 1.88 after 2000 iterations.
Every variant sees the same batches (one seeded generator) and the same initial seed.

Where this departs from nanoGPT's run (on purpose, so every FFN variant plugs in through ``core.blocks``): the
residual output projections are initialised with std 0.02 like every other weight (nanoGPT scales them by
1/sqrt(2 * layers)); the blocks are ``core.blocks.Block`` (our attention and FFN modules, not nanoGPT's
``CausalSelfAttention`` / ``MLP``); val loss is the mean over 20 batches (nanoGPT's ``estimate_loss`` uses 200).
So "1.88" is nanoGPT's figure for a near relative of this model, not for this exact code.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.blocks import Encoder
from core.datadir import DataError, data_dir
from core.ffn import collect_aux_loss, set_guidance, guidance


class CharGPT(nn.Module):
    """tokens[B, T] -> logits[B, T, vocab]: embeddings + causal pre-norm blocks + tied head. ``mixer``: attention
    (``heads``) or mamba (``mixer_kw``: d_state, scan_mode, ...), the long-sequence variant."""

    def __init__(self, vocab: int, block: int = 64, width: int = 128, depth: int = 4, heads: int = 4,
                 ffn: str = "mlp", ffn_kw: dict | None = None, mixer: str = "attention",
                 mixer_kw: dict | None = None):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(block, width)
        kw = {"heads": heads, "causal": True} if mixer == "attention" else dict(mixer_kw or {})
        self.encoder = Encoder(depth, width, mixer=mixer, norm="pre", ffn=ffn, hidden=4 * width, ffn_kw=ffn_kw,
                               **kw)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        return self.head(self.encoder(x))


def load_text(path: Path | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    path = path or data_dir() / "text" / "tinyshakespeare.txt"
    if not path.is_file():
        raise DataError(f"{path}: tiny-shakespeare not found (set FFN_DATA_DIR to the data root holding text/)")
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lut[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    return data[:n], data[n:], len(chars)


def batches(data: torch.Tensor, block: int, batch: int, gen: torch.Generator):
    ix = torch.randint(len(data) - block - 1, (batch,), generator=gen)
    x = torch.stack([data[i:i + block] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
    return x, y


def lr_at(it: int, iters: int, lr: float = 1e-3, min_lr: float = 1e-4, warmup: int = 100) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    ratio = (it - warmup) / max(1, iters - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, ratio))) * (lr - min_lr)


@torch.no_grad()
def evaluate(model, data, block, batch, iters=20, seed=1) -> float:
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
              for x, y in (batches(data, block, batch, gen) for _ in range(iters))]
    model.train()
    return sum(losses) / len(losses)


def train(ffn: str, ffn_kw: dict | None, iters: int, seed: int = 1337, block: int = 64, batch: int = 12,
          text=None, guided_fraction: float = 0.5) -> dict:
    """Train one CharGPT; returns val loss, train seconds and parameter count."""
    train_data, val_data, vocab = text or load_text()
    torch.manual_seed(seed)
    model = CharGPT(vocab, block=block, ffn=ffn, ffn_kw=ffn_kw)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for it in range(iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, iters)
        set_guidance(model, guidance(it, int(guided_fraction * iters)))
        x, y = batches(train_data, block, batch, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten()) + collect_aux_loss(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    secs = time.perf_counter() - t0
    return {"val_loss": evaluate(model, val_data, block, batch), "train_seconds": secs,
            "params": sum(p.numel() for p in model.parameters()), "model": model}

"""The papers' hyperparameters per (model, dataset, horizon), and their published test MSE/MAE.

Sources: S-Mamba ``scripts/multivariate_forecasting/ETT/S_Mamba_ETTh{1,2}.sh`` (d_model 256, d_ff 256,
d_state 2, 2 layers, batch 32, 10 epochs, patience 3); iTransformer ``scripts/.../iTransformer_ETTh{1,2}.sh``
(lr 1e-4); RLinear from Li et al. 2023 (RevIN affine, lr 5e-3, batch 128). Published numbers: lookback 96,
normalised scale, iTransformer paper Table 10 / S-Mamba paper Table 2.
"""
from __future__ import annotations

from core.utils import deep_merge

HORIZONS = (96, 192, 336, 720)

# model kwargs shared by every (dataset, horizon) unless a cell overrides them
_BASE = {
    "s_mamba": {"model": {"d_model": 256, "d_ff": 256, "d_state": 2, "e_layers": 2, "dropout": 0.1},
                "data": {"batch_size": 32}, "trainer": {"max_epochs": 10, "patience": 3}},
    "itransformer": {"model": {"d_model": 256, "d_ff": 256, "n_heads": 8, "e_layers": 2, "dropout": 0.1},
                     "data": {"batch_size": 32}, "optim": {"lr": 1e-4}, "trainer": {"max_epochs": 10, "patience": 3}},
    "rlinear": {"model": {"dropout": 0.0}, "data": {"batch_size": 128, "time_features": False},
                "optim": {"lr": 5e-3}, "trainer": {"max_epochs": 20, "patience": 5}},
}

_CELLS = {
    ("s_mamba", "ETTh1"): {96: {"optim": {"lr": 7e-5}}, 192: {"optim": {"lr": 7e-5}},
                           336: {"optim": {"lr": 5e-5}}, 720: {"optim": {"lr": 5e-5}}},
    ("s_mamba", "ETTh2"): {96: {"optim": {"lr": 4e-5}}, 192: {"optim": {"lr": 4e-5}},
                           336: {"optim": {"lr": 3e-5}}, 720: {"optim": {"lr": 7e-5}}},
    ("itransformer", "ETTh1"): {336: {"model": {"d_model": 512, "d_ff": 512}},
                                720: {"model": {"d_model": 512, "d_ff": 512}}},
    ("itransformer", "ETTh2"): {h: {"model": {"d_model": 128, "d_ff": 128}} for h in HORIZONS},
}

# (model, dataset) -> {horizon: (mse, mae)}
PUBLISHED = {
    ("s_mamba", "ETTh1"): {96: (0.386, 0.405), 192: (0.443, 0.437), 336: (0.489, 0.468), 720: (0.502, 0.489)},
    ("itransformer", "ETTh1"): {96: (0.386, 0.405), 192: (0.441, 0.436), 336: (0.487, 0.458), 720: (0.503, 0.491)},
    ("rlinear", "ETTh1"): {96: (0.386, 0.395), 192: (0.437, 0.424), 336: (0.479, 0.446), 720: (0.481, 0.470)},
    ("s_mamba", "ETTh2"): {96: (0.296, 0.348), 192: (0.376, 0.396), 336: (0.424, 0.431), 720: (0.426, 0.444)},
    ("itransformer", "ETTh2"): {96: (0.297, 0.349), 192: (0.380, 0.400), 336: (0.428, 0.432), 720: (0.427, 0.445)},
    ("rlinear", "ETTh2"): {96: (0.288, 0.338), 192: (0.374, 0.390), 336: (0.415, 0.426), 720: (0.420, 0.440)},
}


def preset(model: str, dataset: str, horizon: int) -> dict:
    """Config fragment with the paper's settings; the model's base settings for unknown data."""
    return deep_merge(_BASE.get(model, {}), _CELLS.get((model, dataset), {}).get(horizon, {}))


def published(model: str, dataset: str, horizon: int, lookback: int = 96) -> tuple[float, float] | None:
    """Published (MSE, MAE) for this cell, or None (other data, horizon or lookback)."""
    if lookback != 96:
        return None
    return PUBLISHED.get((model, dataset), {}).get(horizon)

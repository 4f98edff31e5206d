"""FFN variants behind one constructor contract (timm ``layers/mlp.py`` style).

Every variant is ``Variant(dim, hidden=None, out=None, act=nn.GELU, drop=0.0, bias=True, **own)``
with ``forward(x[..., dim]) -> [..., out]``. Look one up by name in :data:`FFN` or build it
with :func:`build_ffn`. A variant with an auxiliary loss leaves it on ``module.aux_loss``
after each forward; :func:`collect_aux_loss` sums them over a model. Inference-only rewrites are
``reparam()`` methods, applied model-wide by :func:`reparam_model`.

| name | paper | file |
|---|---|---|
| mlp | Vaswani et al. 2017 | mlp.py |
| glu, swiglu | Dauphin et al. 2017; Shazeer 2020 | glu.py |
| lowrank, blockdense | Wei et al. 2024 (structured FFN, self-guided training) | structured.py |
| moe | Fedus et al. 2022 (Switch); Lepikhin et al. 2021 | moe.py |
| mot | Liang et al. 2024 (Mixture-of-Transformers) | mot.py |
| repa | Xu et al. 2025 (RePaViT) | repa.py |
| duo | Alizadeh et al. 2024 (Duo-LLM) | duo.py |
| chess | He et al. 2024 (CHESS) | chess.py |
"""
from core.ffn import chess, duo, glu, mlp, moe, mot, repa, structured  # noqa: F401  (each registers itself)
from core.ffn.chess import ChessFFN, calibrate_chess
from core.ffn.duo import DuoFFN, oracle_routes
from core.ffn.glu import GLU, SwiGLU
from core.ffn.mlp import Mlp
from core.ffn.moe import MoE
from core.ffn.mot import MoTFFN
from core.ffn.registry import ACTIVATIONS, FFN, build_ffn, collect_aux_loss, reparam_model, resolve_act
from core.ffn.repa import RePaFFN
from core.ffn.structured import BlockDenseFFN, GuidedLinear, LowRankFFN, guidance, set_guidance

__all__ = ["ACTIVATIONS", "FFN", "build_ffn", "collect_aux_loss", "reparam_model", "resolve_act", "Mlp", "GLU", "SwiGLU", "MoE",
           "MoTFFN", "RePaFFN", "DuoFFN", "oracle_routes", "ChessFFN", "calibrate_chess", "LowRankFFN",
           "BlockDenseFFN", "GuidedLinear", "guidance", "set_guidance"]

"""FFN variants behind one constructor contract (timm ``layers/mlp.py`` style).

Every variant is ``Variant(dim, hidden=None, out=None, act=nn.GELU, drop=0.0, bias=True, **own)``
with ``forward(x[..., dim]) -> [..., out]``. Look one up by name in :data:`FFN` or build it
with :func:`build_ffn`. A variant with an auxiliary loss leaves it on ``module.aux_loss``
after each forward; :func:`collect_aux_loss` sums them over a model.
"""
from core.ffn.glu import GLU, SwiGLU
from core.ffn.mlp import Mlp
from core.ffn.registry import FFN, build_ffn, collect_aux_loss, reparam_model, resolve_act

__all__ = ["FFN", "build_ffn", "collect_aux_loss", "reparam_model", "resolve_act", "Mlp", "GLU", "SwiGLU"]

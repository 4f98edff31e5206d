"""The FFN registry: a plain dict from name to class, plus model-wide helpers."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

FFN: dict[str, type[nn.Module]] = {}

_ACTS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}
ACTIVATIONS: tuple[str, ...] = tuple(_ACTS)  # the names ``act`` accepts


def register(name: str):
    """Class decorator: ``FFN[name] = cls``. Explicit, called where the class is defined."""

    def deco(cls):
        if name in FFN and FFN[name] is not cls:
            raise ValueError(f"FFN variant {name!r} registered twice ({FFN[name].__name__}, {cls.__name__})")
        FFN[name] = cls
        return cls

    return deco


def resolve_act(act) -> Callable[[], nn.Module]:
    """Accept an ``nn.Module`` class, a factory, or a name such as ``"gelu"``."""
    if isinstance(act, str):
        try:
            return _ACTS[act.lower()]
        except KeyError:
            raise ValueError(f"unknown activation {act!r}; known: {sorted(_ACTS)}") from None
    return act


def build_ffn(name: str, dim: int, hidden: int | None = None, out: int | None = None, **kw) -> nn.Module:
    """Build the FFN variant ``name``: ``build_ffn("swiglu", 256, hidden=512)``."""
    try:
        cls = FFN[name]
    except KeyError:
        raise ValueError(f"unknown FFN variant {name!r}; known: {sorted(FFN)}") from None
    if "act" in kw:
        kw["act"] = resolve_act(kw["act"])
    return cls(dim, hidden=hidden, out=out, **kw)


def collect_aux_loss(model: nn.Module) -> torch.Tensor | float:
    """Sum of every submodule's ``aux_loss`` left by its last forward (0.0 when none)."""
    total: torch.Tensor | float = 0.0
    for m in model.modules():
        aux = getattr(m, "aux_loss", None)
        if isinstance(aux, torch.Tensor):
            total = total + aux
    return total


def reparam_model(model: nn.Module) -> nn.Module:
    """Apply every submodule's inference-only ``reparam()`` in place (eval mode only)."""
    if model.training:
        raise RuntimeError("reparam_model() folds training-time structure; call model.eval() first")
    for m in list(model.modules()):
        if hasattr(m, "reparam"):
            m.reparam()
    return model

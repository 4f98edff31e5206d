"""Token dispatch shared by every FFN that sends tokens to one of several sub-networks (MoE, MoT, Duo).

``dispatch(x[T, dim], route[A], experts, out)``: assignment a sends token ``token[a]`` (default: a itself) to
``experts[route[a]]``; its output, times ``gate[a]`` when given, is added to row ``token[a]`` of y[T, out].
An expert that is ``None`` (Duo's skip route) or an out-of-range route (MoE's dropped assignments, marked -1)
contributes nothing. Each expert runs once, on the gathered rows it was given.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def dispatch(x: torch.Tensor, route: torch.Tensor, experts: Sequence[Callable | None], out_features: int,
             gate: torch.Tensor | None = None, token: torch.Tensor | None = None) -> torch.Tensor:
    y = x.new_zeros(x.shape[0], out_features)
    for e, expert in enumerate(experts):
        if expert is None:
            continue
        sel = (route == e).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        rows = token[sel] if token is not None else sel
        h = expert(x[rows])
        if gate is not None:
            h = h * gate[sel, None].to(h.dtype)
        y.index_add_(0, rows, h.to(y.dtype))
    return y

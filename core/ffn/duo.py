"""Duo-LLM adaptive FFN layer (Alizadeh et al. 2024, "Duo-LLM: A Framework for Studying Adaptive
Computation in Large Language Models").

Every layer holds a big FFN, a small FFN and a skip; each token takes one route:
0 = skip (output 0, the residual carries the token), 1 = small, 2 = big.
- training: routes drawn at random per token (``route_probs``), so every route is trained;
- inference: a learned router (``Linear(dim, 3)``) picks the route once it has been trained (with
  :meth:`router_loss` against oracle routes, then ``router_ready`` set); until then every token takes the big
  FFN (an untrained router's argmax is an arbitrary route); or routes forced through ``layer.route``;
- analysis: :func:`oracle_routes` searches per-token routes across layers under a compute budget.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.ffn.mlp import Mlp
from core.ffn.dispatch import dispatch
from core.ffn.registry import register

SKIP, SMALL, BIG = 0, 1, 2


@register("duo")
class DuoFFN(nn.Module):
    """x[..., dim] -> per-token route (skip | small FFN | big FFN), [..., out]."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True, small_ratio: float = 0.25,
                 route_probs: tuple[float, float, float] = (0.2, 0.3, 0.5)):
        super().__init__()
        hidden, self.out_features = hidden or 4 * dim, out or dim
        self.big = Mlp(dim, hidden, out, act, drop, bias)
        self.small = Mlp(dim, max(1, int(hidden * small_ratio)), out, act, drop, bias)
        self.router = nn.Linear(dim, 3)
        self.register_buffer("route_probs", torch.tensor(route_probs, dtype=torch.float))
        self.register_buffer("router_ready", torch.tensor(False))  # a buffer: checkpoints keep it
        self.cost = (0.0, self.small.fc1.out_features / hidden, 1.0)  # relative compute of skip / small / big
        self.route: torch.Tensor | None = None  # forced routes [...], or None
        self.last_route: torch.Tensor | None = None
        self.router_logits: torch.Tensor | None = None

    def forward(self, x):
        lead = x.shape[:-1]
        self.router_logits = self.router(x.detach())
        if self.route is not None:
            r = self.route.expand(lead)
        elif self.training:
            r = torch.multinomial(self.route_probs, int(torch.tensor(lead).prod()), replacement=True).reshape(lead)
        elif self.router_ready:
            r = self.router_logits.argmax(-1)
        else:
            r = torch.full(lead, BIG, dtype=torch.long, device=x.device)
        self.last_route = r
        experts = {SKIP: None, SMALL: self.small, BIG: self.big}
        y = dispatch(x.reshape(-1, x.shape[-1]), r.reshape(-1), [experts[c] for c in range(3)], self.out_features)
        return y.reshape(*lead, self.out_features)

    def router_loss(self, target_routes: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the router (last forward) against target routes (e.g. the oracle's)."""
        return F.cross_entropy(self.router_logits.reshape(-1, 3), target_routes.reshape(-1))


@torch.no_grad()
def oracle_routes(model: nn.Module, loss_fn, budget: float, sweeps: int = 2):
    """Per-token routes for every :class:`DuoFFN` in ``model`` minimising ``loss_fn(model) -> [tokens]``.

    ``budget``: the mean compute per token and layer allowed (1.0 = big everywhere, 0 = skip everywhere).
    Greedy coordinate search: start from the cheapest assignment within budget (big everywhere when
    budget >= 1), then sweep layers, giving each token the route that lowers its own loss most while the
    total cost stays within budget (tokens interact through mixers, so this is an approximation; the
    returned loss is measured with the final routes). Returns (routes per layer, mean loss).
    """
    layers = [m for m in model.modules() if isinstance(m, DuoFFN)]
    if not layers:
        raise ValueError("model has no DuoFFN layers")
    was = model.training
    model.eval()
    base = loss_fn(model)  # also fixes the token shape through last_route
    shape = layers[0].last_route.shape
    start = BIG if budget >= 1.0 else SKIP
    for m in layers:
        m.route = torch.full(shape, start, dtype=torch.long)
    n_tok = base.numel()
    cost = lambda: sum(torch.tensor(m.cost)[m.route].sum() for m in layers) / (len(layers) * n_tok)  # noqa: E731
    for _ in range(sweeps):
        for m in layers:
            best_loss = loss_fn(model).reshape(shape)
            for code in (SKIP, SMALL, BIG):
                old = m.route.clone()
                m.route = torch.full(shape, code, dtype=torch.long)
                cand = loss_fn(model).reshape(shape)
                m.route = old
                better = cand < best_loss
                trial = torch.where(better, torch.full_like(old, code), old)
                m.route = trial
                if cost() > budget + 1e-9:  # keep only the most helpful changes that fit
                    gain = (best_loss - cand).masked_fill(~better, float("-inf")).flatten()
                    m.route = old
                    for i in gain.argsort(descending=True).tolist():
                        if gain[i] == float("-inf"):
                            break
                        flat = m.route.flatten().clone()
                        flat[i] = code
                        prev, m.route = m.route, flat.reshape(shape)
                        if cost() > budget + 1e-9:
                            m.route = prev
                best_loss = loss_fn(model).reshape(shape)
    routes = [m.route.clone() for m in layers]
    final = float(loss_fn(model).mean())
    for m in layers:
        m.route = None
    model.train(was)
    return routes, final

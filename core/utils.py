"""Small helpers shared by every layer (no torch, no domain)."""
from __future__ import annotations


def deep_merge(base: dict, *overrides: dict) -> dict:
    """A new dict: ``overrides`` merged into ``base`` left to right, nested dicts merged key by key."""
    out = dict(base)
    for over in overrides:
        for k, v in over.items():
            out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

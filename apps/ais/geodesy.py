"""Positions on the Earth and the frames the AIS app works in, for numpy arrays and torch tensors alike.

- ``haversine(lat1, lon1, lat2, lon2)``: great-circle distance in metres (R = 6,371,008.8 m, the IUGG mean radius).
- ``to_local`` / ``from_local``: an equirectangular east/north frame in metres around a reference fix; exact
  enough within the few kilometres a vessel moves in minutes (errors are still scored with ``haversine``).
- ``to_track_frame`` / ``to_east_north`` / ``from_east_north``: east/north metres <-> the vessel's frame at its
  last report, (cross-track to starboard, along-track ahead) for a course over ground in degrees.
"""
from __future__ import annotations

import numpy as np
import torch

EARTH_RADIUS_M = 6_371_008.8


def haversine(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres; numpy arrays or torch tensors, degrees in."""
    lib = torch if isinstance(lat1, torch.Tensor) else np
    p1, p2 = lib.deg2rad(lat1), lib.deg2rad(lat2)
    dp, dl = p2 - p1, lib.deg2rad(lon2 - lon1)
    a = lib.sin(dp / 2) ** 2 + lib.cos(p1) * lib.cos(p2) * lib.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * lib.arcsin(lib.sqrt(lib.clip(a, 0, 1)) if lib is np else lib.sqrt(a.clamp(0, 1)))


def to_local(lat, lon, lat0, lon0):
    """(east, north) metres of (lat, lon) from the reference (lat0, lon0)."""
    lib = torch if isinstance(lat, torch.Tensor) else np
    k = np.pi / 180 * EARTH_RADIUS_M
    return (lon - lon0) * k * lib.cos(lib.deg2rad(lat0)), (lat - lat0) * k


def from_local(east, north, lat0, lon0):
    """Inverse of :func:`to_local` -> (lat, lon)."""
    lib = torch if isinstance(east, torch.Tensor) else np
    k = np.pi / 180 * EARTH_RADIUS_M
    return lat0 + north / k, lon0 + east / (k * lib.cos(lib.deg2rad(lat0)))


def to_track_frame(east, north, cog_deg):
    """east/north -> (cross-track to starboard, along-track) for a course ``cog_deg`` (broadcasts)."""
    c = np.deg2rad(cog_deg)
    return east * np.cos(c) - north * np.sin(c), east * np.sin(c) + north * np.cos(c)


def to_east_north(ct: torch.Tensor, cog_deg: torch.Tensor) -> torch.Tensor:
    """(cross, along)[..., B, H, 2] in the frame of course ``cog_deg`` [B] -> (east, north)."""
    c = torch.deg2rad(cog_deg)[:, None]
    cross, along = ct[..., 0], ct[..., 1]
    return torch.stack([cross * c.cos() + along * c.sin(), along * c.cos() - cross * c.sin()], -1)


def from_east_north(en: torch.Tensor, cog_deg: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_east_north`."""
    c = torch.deg2rad(cog_deg)[:, None]
    e, n = en[..., 0], en[..., 1]
    return torch.stack([e * c.cos() - n * c.sin(), e * c.sin() + n * c.cos()], -1)

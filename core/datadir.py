"""Datasets found by name in the data directory (``FFN_DATA_DIR``), downloaded and checked when missing.

Layout: ``$FFN_DATA_DIR/<app>/<file>`` (``forecast/ETTh1.csv``, ``graph/Planetoid/...``). Unset, the
directory is ``<project>/data``. A known file that is missing is downloaded from its public URL
(only when the network is up) and its sha256 checked before it is used.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data; the message names the file and the place."""


@dataclass(frozen=True)
class RemoteFile:
    relpath: str  # under the data dir, e.g. "forecast/ETTh1.csv"
    url: str
    sha256: str


def data_dir() -> Path:
    env = os.environ.get("FFN_DATA_DIR")
    return Path(env).expanduser().resolve() if env else Path(__file__).resolve().parents[1] / "data"


def cache_dir() -> Path:
    """Writable place for derived files (PyG's processed/, encoded spike sets): ``$FFN_CACHE`` or
    ``~/.cache/ffn-pipelines``. The data directory itself may be read-only."""
    env = os.environ.get("FFN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ffn-pipelines"


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(remote: RemoteFile, root: Path | None = None, timeout: float = 30.0) -> Path:
    """Path of ``remote`` in the data dir; download it there (sha256-checked) when it is missing."""
    path = (root or data_dir()) / remote.relpath
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        with urllib.request.urlopen(remote.url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: not found, and the download from {remote.url} failed ({e}). "
                        f"Put the file there or set FFN_DATA_DIR to a directory holding {remote.relpath}.") from e
    got = sha256(tmp)
    if got != remote.sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{remote.url}: sha256 {got} does not match the expected {remote.sha256}")
    tmp.replace(path)
    return path


FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def fsdd_files(folder: Path) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, index) for every wav of the Free Spoken Digit Dataset's recordings folder (its file
    naming, read by the spiking and the audio apps); a name outside the pattern is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder}: FSDD recordings folder not found (expected {{digit}}_{{speaker}}_{{index}}.wav "
                        f"files; `python -m pipelines.data get audio` fetches them)")
    out = []
    for p in sorted(folder.glob("*.wav")):
        m = FSDD_NAME.match(p.name)
        if not m:
            raise DataError(f"{p}: file name is not {{digit}}_{{speaker}}_{{index}}.wav")
        out.append((p, int(m[1]), m[2], int(m[3])))
    if not out:
        raise DataError(f"{folder}: no .wav files")
    return out

"""``python -m pipelines.data``: every app's default dataset, downloaded from its public source and sha256-checked.

    python -m pipelines.data                 # what is there and what is missing, per app
    python -m pipelines.data get traffic     # download and verify into $FFN_DATA_DIR (default: data/)
    python -m pipelines.data get all --mirror http://host/   # from a mirror laid out as <repo>/<ref>/<path>

Each source is a pinned commit of a public repository; its files, sizes and sha256 are listed in
``pipelines/sources/<source>.csv`` (``docs/data.md`` has the licences). Files are fetched into a staging folder
beside the data and moved into place only when every file of the app has its expected sha256: a failed or
interrupted download leaves the data directory as it was. Derived files (nDPI's ``flow_labels.csv``, parsed from
nDPI's own ``.out`` results) are rebuilt and checked against the sha256 of the published derivation.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core.datadir import DataError, data_dir, sha256

SOURCES_DIR = Path(__file__).resolve().parent / "sources"
GITHUB_RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    """Files ``<repo>/<ref>/<folder>/<name>`` of a repository, stored as ``<into>/<name>`` under the data dir."""
    key: str  # pipelines/sources/<key>.csv: name, bytes, sha256 (and ``remote`` when the file is renamed)
    repo: str
    ref: str
    folder: str
    into: str
    licence: str

    def files(self) -> list[dict[str, str]]:
        with open(SOURCES_DIR / f"{self.key}.csv", newline="") as f:
            return list(csv.DictReader(f))

    def url(self, mirror: str, row: dict[str, str]) -> str:
        remote = row.get("remote") or row["name"]
        return f"{mirror.rstrip('/')}/{self.repo}/{self.ref}/{self.folder}/{urllib.parse.quote(remote)}"


SOURCES = {s.key: s for s in [
    Source("ett", "zhouhaoyi/ETDataset", "1d16c8f4f943005d613b5bc962e9eeb06058cf07", "ETT-small", "forecast",
           "CC BY-ND 4.0"),
    Source("dma-ais", "dma-ais/AisAbnormal", "186e4ccf147a82aa8a5f97b0373b11520406f106",
           "ais-ab-stat-builder/src/test/resources", "ais", "LGPL-3.0; data by the Danish Maritime Authority"),
    Source("planetoid-cora", "kimiyoung/planetoid", "master", "data", "graph/Planetoid/Cora/raw", "MIT"),
    Source("fsdd", "Jakobovski/free-spoken-digit-dataset", "26eb9aaf76e81b692f806f9140c2d2777410d7a1", "recordings",
           "audio/fsdd/recordings", "CC BY-SA 4.0"),
    Source("ndpi-pcap", "ntop/nDPI", "3b1286ab03b0c9223ac208a01868d8c1f6c0ae00", "tests/cfgs/default/pcap",
           "traffic/ndpi/pcap", "LGPL-3.0"),
    Source("ndpi-result", "ntop/nDPI", "3b1286ab03b0c9223ac208a01868d8c1f6c0ae00", "tests/cfgs/default/result",
           "traffic/ndpi/result", "LGPL-3.0"),
    Source("tinyshakespeare", "karpathy/char-rnn", "master", "data/tinyshakespeare",
           "text", "public-domain text (repository MIT)"),
]}

# nDPI's per-flow labels, derived from its .out results by apps.traffic.ndpi_out (the same bytes as the published
# derivation in the project's data notes)
FLOW_LABELS = ("traffic/ndpi/flow_labels.csv", "dbe934db8f168b32a219cc3b991a55ab4462c408bacf87b327328a2f99b92ce3")

APPS = {"forecast": ["ett"], "ais": ["dma-ais"], "graph": ["planetoid-cora"], "audio": ["fsdd"], "spiking": ["fsdd"],
        "traffic": ["ndpi-pcap", "ndpi-result"], "text": ["tinyshakespeare"]}


def _wanted(app: str) -> list[tuple[Source, dict[str, str]]]:
    return [(SOURCES[k], row) for k in APPS[app] for row in SOURCES[k].files()]


def missing(app: str, root: Path | None = None) -> list[str]:
    """Paths (relative to the data dir) of ``app``'s files that are not there (sizes are checked, not hashes)."""
    root = root or data_dir()
    paths = [(root / s.into / r["name"], r) for s, r in _wanted(app)]
    out = [str(p.relative_to(root)) for p, r in paths if not p.is_file() or p.stat().st_size != int(r["bytes"])]
    if app == "traffic" and not (root / FLOW_LABELS[0]).is_file():
        out.append(FLOW_LABELS[0])
    return out


def _download(url: str, dest: Path, expected: str, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    got = sha256(dest)
    if got != expected:
        raise DataError(f"{url}: sha256 {got} does not match the expected {expected}")


def get(app: str, root: Path | None = None, mirror: str | None = None, workers: int = 8, timeout: float = 60.0,
        log=print) -> list[Path]:
    """Download ``app``'s missing files into the data dir, all verified before any is moved into place.
    -> the paths written. Raises DataError (nothing written) on a failed download or a wrong checksum."""
    root = (root or data_dir()).resolve()
    mirror = mirror or os.environ.get("FFN_DATA_MIRROR") or GITHUB_RAW
    todo = []
    for src, row in _wanted(app):
        dest = root / src.into / row["name"]
        if dest.is_file():
            if sha256(dest) != row["sha256"]:
                raise DataError(f"{dest}: present but its sha256 is not the published {row['sha256']}; move it away "
                                f"and run again")
            continue
        todo.append((src.url(mirror, row), src.into, row))
    derive = app == "traffic" and not (root / FLOW_LABELS[0]).is_file()
    if not todo and not derive:
        log(f"{app}: all {len(_wanted(app))} files present and verified in {root}")
        return []
    staging = root / f".get-{app}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if todo:
            log(f"{app}: downloading {len(todo)} files from {urllib.parse.urlsplit(mirror).netloc} ...")
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda t: _download(t[0], staging / t[1] / t[2]["name"], t[2]["sha256"], timeout), todo))
        if derive:
            from apps.traffic.ndpi_out import write_flow_labels

            results = staging / "traffic/ndpi/result"
            if not results.is_dir():  # the .out files were already in place
                results = root / "traffic/ndpi/result"
            out = staging / FLOW_LABELS[0]
            out.parent.mkdir(parents=True, exist_ok=True)
            write_flow_labels(results, out)
            if sha256(out) != FLOW_LABELS[1]:
                raise DataError(f"{out.name} derived from {results}: sha256 {sha256(out)} is not the published "
                                f"{FLOW_LABELS[1]}")
        written = []
        for p in sorted(q for q in staging.rglob("*") if q.is_file()):
            dest = root / p.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            p.replace(dest)
            written.append(dest)
    except urllib.error.HTTPError as e:
        raise DataError(f"{e.url}: HTTP {e.code} {e.reason}; nothing written") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise DataError(f"cannot reach {urllib.parse.urlsplit(mirror).netloc} ({getattr(e, 'reason', e)}): put "
                        f"{_where(app)} (sources: docs/data.md), or set FFN_DATA_DIR to a folder that has them") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{app}: {len(written)} files written and verified in {root}")
    return written


def _where(app: str) -> str:
    parts = []
    for src in (SOURCES[k] for k in APPS[app]):
        renamed = [f"{r['remote']} as {r['name']}" for r in src.files() if r.get("remote")]
        parts.append(f"{src.repo}@{src.ref[:8]}:{src.folder}/ into {data_dir() / src.into}/"
                     + (f" ({', '.join(renamed)})" if renamed else ""))
    return "; ".join(parts)


def status(root: Path | None = None) -> str:
    root = root or data_dir()
    lines = [f"data directory: {root}", f"{'app':<9} {'files':>6} {'missing':>8}  source"]
    for app, keys in APPS.items():
        n, miss = len(_wanted(app)), len(missing(app, root))
        where = ", ".join(dict.fromkeys(f"{SOURCES[k].repo}@{SOURCES[k].ref[:8]}" for k in keys))
        lines.append(f"{app:<9} {n:>6} {miss:>8}  {where}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    g = sub.add_parser("get", help="download and verify an app's default dataset")
    g.add_argument("apps", nargs="+", choices=[*APPS, "all"], help="app(s) whose data to fetch, or all")
    g.add_argument("--mirror", help=f"base URL laid out as <repo>/<ref>/<path> (default {GITHUB_RAW}, or "
                                    "$FFN_DATA_MIRROR)")
    g.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    a = p.parse_args(argv)
    if a.cmd is None:
        print(status())
        return 0
    apps = list(APPS) if "all" in a.apps else list(dict.fromkeys(a.apps))
    try:
        for app in apps:
            get(app, mirror=a.mirror, workers=a.workers)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

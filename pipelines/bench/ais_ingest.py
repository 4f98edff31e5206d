"""``bench ais`` sections ``ingest`` and ``scale``: how fast and in how much memory our reader turns a raw DMA log into
clean tracks, against pyais's own stream reader decoding the same messages (what each section prints is in
:mod:`pipelines.bench.ais`'s docstring)."""
from __future__ import annotations

import statistics
import time
import tracemalloc

from apps.ais.clean import clean
from apps.ais.data import resolve_paths
from apps.ais.ingest import read
from pipelines.bench.table import markdown


def ingest(a) -> str:
    from pyais.stream import BinaryIOStream

    (path,) = resolve_paths(None)
    import gzip

    def pyais_loop():
        n = 0
        with gzip.open(path, "rb") as f:
            for msg in BinaryIOStream(f):
                msg.decode()
                n += 1
        return n

    def ours():
        df, st = read(path)
        tracks, _ = clean(df)
        return st.messages, len(tracks)

    n_ref, (n_ours, _) = pyais_loop(), ours()
    if n_ref != n_ours:
        raise RuntimeError(f"pyais saw {n_ref} messages, we saw {n_ours}: not the same work")
    t_ref, t_ours = [], []
    for _ in range(a.reps):
        t = time.perf_counter(); pyais_loop(); t_ref.append(time.perf_counter() - t)  # noqa: E702
        t = time.perf_counter(); ours(); t_ours.append(time.perf_counter() - t)  # noqa: E702
    tracemalloc.start()
    ours()
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    r, o = statistics.median(t_ref), statistics.median(t_ours)
    return markdown(["reader", "messages", "median s", "messages / s", "ratio to pyais"],
                    [["pyais BinaryIOStream + decode() of every message", n_ref, f"{r:.2f}", f"{n_ref / r:,.0f}", "1.00"],
                     ["ours: read + decode position reports + clean to tracks", n_ours, f"{o:.2f}",
                      f"{n_ours / o:,.0f}", f"{o / r:.2f}"]]) + f"\n\nPeak Python memory of ours: {peak:.0f} MB " \
        f"(tracemalloc); {a.reps} interleaved repetitions; {path.name}."


_MEASURE = """
import sys, time
from pathlib import Path
path, who = Path(sys.argv[1]), sys.argv[2]
if who in ("ours", "none"):
    from apps.ais.clean import clean
    from apps.ais.ingest import read
else:
    from pyais.stream import BinaryIOStream


def peak_kb():  # this process image's own high-water mark (ru_maxrss would carry the parent's across exec)
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))


t = time.perf_counter()
if who == "ours":
    df, st = read(path)
    tracks, _ = clean(df)
    n, kept = st.messages, len(df)
elif who == "pyais":
    n = kept = 0
    with open(path, "rb") as f:
        for msg in BinaryIOStream(f):
            msg.decode()
            n += 1
else:
    n = kept = 0
print(time.perf_counter() - t, n, kept, peak_kb())
"""


def _repeated_log(src, dest, megabytes: float) -> int:
    """Write ``src`` (the DMA log, $PGHP-timed) repeated until ``megabytes``, copy k's receive times + k x 300 s;
    -> the number of copies."""
    import calendar
    import gzip

    with gzip.open(src, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    stamps = {}
    for i, ln in enumerate(lines):
        if ln.startswith(b"$PGHP"):
            f = ln.split(b"*")[0].split(b",")
            y, mo, d, h, mi, sec, ms = (int(v) for v in f[2:9])
            stamps[i] = (calendar.timegm((y, mo, d, h, mi, sec)), ms, f, ln[ln.index(b"*"):])
    size = sum(map(len, lines))
    copies = max(1, int(round(megabytes * 1e6 / size)))
    with open(dest, "wb") as out:
        for k in range(copies):
            block = list(lines)
            for i, (t, ms, f, tail) in stamps.items():
                tt = time.gmtime(t + 300 * k)
                f2 = f[:2] + [str(v).encode() for v in (tt.tm_year, tt.tm_mon, tt.tm_mday, tt.tm_hour, tt.tm_min,
                                                          tt.tm_sec, ms)] + f[9:]
                block[i] = b",".join(f2) + tail
            out.writelines(block)
    return copies


def scale(a) -> str:
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    (src,) = resolve_paths(None)
    rows, per_million = [], []
    with tempfile.TemporaryDirectory() as tmp:
        def measure(path, who):
            out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), who], capture_output=True, text=True,
                                 check=True, env={**__import__("os").environ, "PYTHONPATH": str(Path.cwd())})
            sec, n, kept, rss = out.stdout.split()
            return float(sec), int(n), int(kept), int(rss) / 1024

        for mb in a.scale_mb:
            path = Path(tmp) / f"dma_x{mb}.nmea"
            copies = _repeated_log(src, path, mb)
            base = measure(path, "none")[3]  # the interpreter and its imports, reading nothing
            ours = measure(path, "ours")
            ref = measure(path, "pyais")
            if ours[1] != ref[1]:
                raise RuntimeError(f"pyais saw {ref[1]} messages, we saw {ours[1]}: not the same work")
            grow = (ours[3] - base) / (ours[2] / 1e6)
            per_million.append(grow)
            rows.append([f"{path.stat().st_size / 1e6:,.0f}", copies, f"{ours[1]:,}", f"{ours[2]:,}", f"{ref[0]:.1f}",
                         f"{ours[0]:.1f}", f"{ours[0] / ref[0]:.2f}", f"{ours[3]:,.0f}", f"{grow:,.0f}"])
            path.unlink()
    return markdown(["log MB", "copies", "messages", "position reports", "pyais decode s", "ours read + clean s",
                     "ratio to pyais", "ours peak RSS MB", "MB per million reports"], rows) + (
        "\n\nEach reader in a fresh process on the same file (ours: read, decode position reports, clean to tracks; "
        "pyais: BinaryIOStream + decode() of every message), after checking both count the same messages. Peak RSS "
        "from /proc/self/status (VmHWM); MB per million reports: our peak above an interpreter that imports the same modules and "
        "reads nothing, divided by the reports kept (flat across sizes = memory follows the reports, not the text).")

"""Plain-text tables for benchmark output (markdown, so they paste into the README as they are)."""
from __future__ import annotations

import statistics


def markdown(header: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])


def mean_std(values: list[float], digits: int) -> str:
    """``"0.386 ± 0.002"`` (mean ± sample std; the mean alone for one value)."""
    out = f"{statistics.mean(values):.{digits}f}"
    return out + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")

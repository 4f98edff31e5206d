"""``python -m pipelines.bench <area> [options]``; areas: forecast, ssm, ffn, graph, spiking, ais, traffic, audio,
reliability."""
from __future__ import annotations

import importlib
import sys

AREAS = {"forecast": "pipelines.bench.forecast", "ssm": "pipelines.bench.ssm", "ffn": "pipelines.bench.ffn",
         "graph": "pipelines.bench.graph", "spiking": "pipelines.bench.spiking", "ais": "pipelines.bench.ais",
         "traffic": "pipelines.bench.traffic", "audio": "pipelines.bench.audio",
         "reliability": "pipelines.bench.reliability"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in AREAS:
        msg = f"usage: python -m pipelines.bench {{{','.join(AREAS)}}} [--quick] [--help]"
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown benchmark area {argv[0]!r}\n{msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    return importlib.import_module(AREAS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Running a benchmark made of named sections: each prints a markdown table and logs it to one MLflow run."""
from __future__ import annotations

import logging
import statistics
import sys
import time
import warnings

import mlflow

from pipelines import tracking


def add_common(ap, sections: tuple[str, ...], reps: int = 20) -> None:
    """--sections, --reps (timing repetitions; a --quick default goes through :func:`parse_quick`), --threads."""
    ap.add_argument("--sections", nargs="+", default=list(sections))
    ap.add_argument("--reps", type=int, default=reps, help=f"timing repetitions (default {reps})")
    ap.add_argument("--threads", type=int, default=None)


def parse_quick(ap, argv, **quick):
    """Parse ``argv``; under --quick the ``quick`` values replace the defaults, so what the user types still wins."""
    a = ap.parse_args(argv)
    if a.quick and quick:
        ap.set_defaults(**quick)
        a = ap.parse_args(argv)
    return a


def check_sections(ap, a, sections: tuple[str, ...]):
    """Refuse unknown sections and a non-positive --reps."""
    bad = sorted(set(a.sections) - set(sections))
    if bad:
        ap.error(f"unknown section(s) {bad}; known: {', '.join(sections)}")
    if a.reps <= 0:
        ap.error(f"--reps must be positive, got {a.reps}")
    return a


def interleaved_ms(fns: dict, reps: int, warmup: int = 5, inner: int = 1) -> dict[str, float]:
    """Median ms per call of each fn: ``warmup`` calls each, then ``reps`` rounds in which every fn runs ``inner``
    times in turn (interleaved, so all see the same machine load)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                f()
            times[k].append((time.perf_counter() - t) / inner * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


def run_sections(area: str, a, sections: dict, params: dict) -> int:
    """``sections``: name -> callable(args) -> markdown table, run in ``a.sections`` order in one MLflow run."""
    tracking.activate()
    tracking.use_experiment("bench")
    t0 = time.time()
    with mlflow.start_run(run_name=f"bench-{area}" + ("-quick" if a.quick else "")) as run:
        mlflow.log_params(params)
        for name in a.sections:
            t = time.time()
            table = sections[name](a)
            text = f"## {name} ({time.time() - t:.0f}s)\n\n{table}\n"
            print(text, flush=True)
            mlflow.log_text(text, f"bench_{area}_{name}.md")
        mlflow.log_metric("wall_seconds", time.time() - t0)
    print(f"{params.get('threads')} threads, {time.time() - t0:.0f}s; MLflow run {run.info.run_id}")
    return 0


def bench_main(area: str, a, sections: dict, check_data, params: dict) -> int:
    """Quiet logs, set threads, check the data is there (``check_data()`` raising DataError: one ``error:`` line,
    exit 2), then :func:`run_sections` with ``params`` + the thread count."""
    from core.datadir import DataError
    from pipelines.runner import set_threads

    quiet()
    threads = set_threads({"threads": a.threads})
    try:
        check_data()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_sections(area, a, sections, {**params, "threads": threads})

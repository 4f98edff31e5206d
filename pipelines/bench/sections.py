"""Running a benchmark made of named sections: each prints a markdown table and logs it to one MLflow run."""
from __future__ import annotations

import hashlib
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mlflow
import torch

from pipelines import tracking


def add_common(ap, sections: tuple[str, ...], reps: int = 20, default: tuple[str, ...] | None = None) -> None:
    """--sections (``default``: all), --reps (timing repetitions; a --quick default goes through
    :func:`parse_quick`), --threads."""
    ap.add_argument("--sections", nargs="+", default=list(default or sections))
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


def train(job, user: dict, dm=None, reference: bool = False):
    """One training of ``job`` through the runner's one path (:func:`pipelines.runner.fit_test`) with ``user``'s
    options over the job's defaults, quiet, at this process's thread count; nothing logged to MLflow. ``dm``: a data
    module made by ``job.data`` for the same data options, reused across trainings. -> its Outcome."""
    from core.utils import deep_merge
    from pipelines.job import check_config
    from pipelines.runner import fit_test

    quiet_trainer = {"trainer": {"enable_progress_bar": False, "enable_model_summary": False}}
    cfg = job.resolve(deep_merge(quiet_trainer, user, {"threads": torch.get_num_threads()}))
    check_config(job, cfg)
    return fit_test(job, cfg, dm=dm, reference=reference)


def job_data(job, user: dict):
    """``job``'s data module for ``user``'s options (to share between the trainings of one data set)."""
    from core.utils import deep_merge
    from pipelines.job import check_config

    cfg = job.resolve(deep_merge(user, {}))
    check_config(job, cfg)
    return job.data(cfg)


def quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


ROOT = Path(__file__).resolve().parents[2]


def code_hash(paths: tuple[str, ...] = ("core", "apps", "pipelines")) -> str:
    """sha256 (12 hex) of the Python sources under ``paths`` (relative to the checkout): results are reused or
    compared only across equal code."""
    files = sorted(f for p in paths for f in ((ROOT / p).rglob("*.py") if (ROOT / p).is_dir() else [ROOT / p]))
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def git_commit() -> str:
    """HEAD's commit, with ``+dirty`` when the working tree has uncommitted changes to tracked files."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD") or "unknown"
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(area: str, quick: bool, threads: int) -> dict[str, str]:
    """Tags that say how a bench run's tables were made (``pipelines.report`` prints them above each table)."""
    return {"bench.area": area, "bench.quick": str(bool(quick)).lower(),
            "bench.command": " ".join(["python -m pipelines.bench", area, *sys.argv[2:]])
            if sys.argv[1:2] == [area] else f"python -m pipelines.bench {area} (called from {Path(sys.argv[0]).name})",
            "bench.commit": git_commit(), "bench.code_hash": code_hash(), "bench.threads": str(threads),
            "bench.date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "bench.host_cpus": str(os.cpu_count())}


def run_sections(area: str, a, sections: dict, params: dict) -> int:
    """``sections``: name -> callable(args) -> markdown table, run in ``a.sections`` order in one MLflow run, tagged
    with its provenance; each table is an artifact ``bench_<area>_<section>.md``."""
    tracking.activate()
    tracking.use_experiment("bench")
    t0 = time.time()
    tags = provenance(area, a.quick, params.get("threads") or torch.get_num_threads())
    with mlflow.start_run(run_name=f"bench-{area}" + ("-quick" if a.quick else ""), tags=tags) as run:
        mlflow.log_params(params)
        for name in a.sections:
            t = time.time()
            table = sections[name](a)
            text = f"## {name} ({time.time() - t:.0f}s)\n\n{table}\n"
            print(text, flush=True)
            mlflow.log_text(text, f"bench_{area}_{name}.md")
            mlflow.set_tag(f"bench.seconds.{name}", f"{time.time() - t:.0f}")
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

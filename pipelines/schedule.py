"""``python -m pipelines.schedule --config jobs.yaml``: an in-process scheduler (APScheduler) for retrain jobs.

    jobs:
      - name: forecast-nightly
        app: forecast
        cron: "0 3 * * *"                 # crontab fields: minute hour day month weekday
        args: ["--model", "rlinear", "--margin", "0.01"]
      - name: graph-hourly
        app: graph
        interval_seconds: 3600            # instead of cron

Each run is ``python -m pipelines.retrain <app> <args>`` in a child process (a crash or a leak in one training
cannot take the scheduler down); its exit code and last output line are logged, and the scheduler keeps going
when a job fails. Runs of one job never overlap (``max_instances=1``; the retrain lock also guards against
other hosts' cron). ``--run-now`` runs every job once at start; ``--max-runs N`` stops after N job runs.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
from datetime import datetime, timezone

import yaml
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pipelines.config import ConfigError

log = logging.getLogger("pipelines.schedule")


def load_jobs(path: str) -> list[dict]:
    try:
        with open(path) as f:
            spec = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the jobs file ({e})") from None
    jobs = spec.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"{path}: needs a non-empty 'jobs:' list")
    for i, j in enumerate(jobs):
        where = f"{path}: jobs[{i}]"
        if not isinstance(j, dict) or "app" not in j:
            raise ConfigError(f"{where}: needs an 'app'")
        if ("cron" in j) == ("interval_seconds" in j):
            raise ConfigError(f"{where}: give exactly one of 'cron' or 'interval_seconds'")
        if "cron" in j:
            try:
                CronTrigger.from_crontab(j["cron"])
            except ValueError as e:
                raise ConfigError(f"{where}: bad cron expression {j['cron']!r} ({e})") from None
        j.setdefault("name", f"{j['app']}-{i}")
        j["args"] = [str(a) for a in j.get("args", [])]
    return jobs


class Runner:
    def __init__(self, max_runs: int | None = None):
        self.max_runs, self.runs, self.done = max_runs, 0, threading.Event()
        self.lock = threading.Lock()
        self.outcomes: list[tuple[str, int, str]] = []

    def __call__(self, job: dict) -> None:
        cmd = [sys.executable, "-m", "pipelines.retrain", job["app"], *job["args"]]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            last = (p.stdout.strip().splitlines() or p.stderr.strip().splitlines() or [""])[-1]
            code = p.returncode
        except Exception as e:  # noqa: BLE001 - the scheduler must survive anything a job does
            code, last = -1, f"could not start: {e}"
        (log.info if code == 0 else log.error)("%s: exit %d: %s", job["name"], code, last)
        with self.lock:
            self.outcomes.append((job["name"], code, last))
            self.runs += 1
            if self.max_runs and self.runs >= self.max_runs:
                self.done.set()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.schedule", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--max-runs", type=int, default=None)
    ap.add_argument("--run-now", action="store_true", help="run every job once at start, then on its schedule")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        jobs = load_jobs(a.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runner = Runner(a.max_runs)
    sched = BackgroundScheduler()
    for j in jobs:
        trigger = CronTrigger.from_crontab(j["cron"]) if "cron" in j else IntervalTrigger(seconds=j["interval_seconds"])
        first = {"next_run_time": datetime.now(timezone.utc)} if a.run_now else {}
        sched.add_job(runner, trigger, args=[j], id=j["name"], max_instances=1, coalesce=True, **first)
        log.info("scheduled %s: %s %s", j["name"], j.get("cron") or f"every {j['interval_seconds']} s", j["args"])
    sched.start()
    try:
        runner.done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sched.shutdown(wait=True)
    failed = sum(code != 0 for _, code, _ in runner.outcomes)
    print(f"{len(runner.outcomes)} runs, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

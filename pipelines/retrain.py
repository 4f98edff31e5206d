"""``python -m pipelines.retrain <app> [--margin M] [--section.key value ...]``: champion / challenger retraining.

One idempotent step for cron, systemd timers or Airflow:

1. take the lock of the registered model (``<mlruns>/locks/<name>.lock``); if another retrain holds it, say
   who and exit 3; mark FAILED the runs this host left RUNNING when their process was killed;
2. train on the latest data with the app's runner; the new version is registered as ``challenger``
   (the very first version of a name becomes ``champion`` and the step ends there);
3. score challenger and champion afresh on the same newest holdout (the app's ``Job.score``, lower is better);
4. move ``champion`` to the challenger only if ``challenger < champion * (1 - margin)``; log both scores and the
   decision on the challenger's run and model version; print one line; exit 0.

The alias move is the last action, a single registry call: a retrain that fails or is killed anywhere before it
leaves the champion exactly as it was (exit 2 for bad data/config, 1 otherwise).
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from contextlib import contextmanager

import mlflow
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.runner import cli_call, resolved_config, run

LOCKED = 3


def jobs() -> dict:
    from pipelines.ais import AISJob
    from pipelines.audio import AudioJob
    from pipelines.forecast import ForecastJob
    from pipelines.graph import GraphJob
    from pipelines.spiking import SpikingJob
    from pipelines.traffic import TrafficJob

    return {"forecast": ForecastJob, "ais": AISJob, "graph": GraphJob, "spiking": SpikingJob,
            "traffic": TrafficJob, "audio": AudioJob}


class Locked(RuntimeError):
    pass


@contextmanager
def model_lock(name: str):
    """An exclusive, non-blocking flock per registered model name; released when the process ends or exits."""
    path = tracking.mlruns_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown process"
        f.close()
        raise Locked(f"another retrain of {name!r} is running ({holder}); lock {path}") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    f.flush()
    try:
        yield path
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def reap_stale_runs(client, experiment: str) -> list[str]:
    """Mark FAILED the RUNNING runs of ``experiment`` started on this host by a process that no longer exists
    (killed by SIGKILL or cut off from the tracking server, nobody left to end them). -> their ids."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    host, reaped = socket.gethostname(), []
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'"):
        pid = r.data.tags.get("pid", "")
        if r.data.tags.get("host") != host or not pid.isdigit() or _alive(int(pid)):
            continue
        client.set_tag(r.info.run_id, "ended_by", f"retrain on {host}: process {pid} no longer exists")
        client.set_terminated(r.info.run_id, "FAILED")
        reaped.append(r.info.run_id)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_predictor(uri: str):
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().predictor


def retrain(app: str, argv: list[str], margin: float = 0.0) -> tuple[str, dict]:
    """-> (one-line summary, details). Raises on failure, with the champion untouched."""
    job = jobs()[app]()
    cfg = resolved_config(job, argv)
    name = cfg["mlflow"]["model_name"] or job.app
    with model_lock(name):
        uri = tracking.activate()
        client = MlflowClient(uri)
        reap_stale_runs(client, cfg["mlflow"]["experiment"] or job.app)
        result = run(job, cfg=cfg)
        champion = _champion(client, name)
        if champion is None or str(champion.version) == str(result.version):
            return f"{name}: v{result.version} is the first model and the champion", {"version": result.version}
        dm = result.datamodule  # the newest data, as the challenger was just tested on it
        new = job.score(load_predictor(result.model_uri), dm)
        old = job.score(load_predictor(f"models:/{name}/{champion.version}"), dm)
        promote = new < old * (1.0 - margin) if old >= 0 else new < old
        decision = "promoted" if promote else "kept"
        details = {"challenger": result.version, "champion": champion.version, "challenger_score": new,
                   "champion_score": old, "decision": decision, "metric": job.score_name}
        for k, v in (("retrain_challenger_score", new), ("retrain_champion_score", old)):
            client.log_metric(result.run_id, k, v)
        client.set_tag(result.run_id, "retrain.decision", decision)
        for k, v in details.items():
            client.set_model_version_tag(name, result.version, f"retrain.{k}", str(v))
        if promote:  # the one and only write to the champion alias
            client.set_registered_model_alias(name, "champion", result.version)
            client.delete_registered_model_alias(name, "challenger")
        rel = "<" if promote else ">="
        line = (f"{name}: {decision} v{result.version if promote else champion.version} as champion "
                f"(challenger v{result.version} {job.score_name} {new:.4f} {rel} champion v{champion.version} "
                f"{old:.4f}, margin {margin:g})")
        return line, details


def _champion(client, name):
    try:
        return client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        return None


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in jobs():
        msg = f"usage: python -m pipelines.retrain {{{','.join(jobs())}}} [--margin M] [--section.key value ...]"
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown app {argv[0]!r}\n{msg}", file=sys.stderr)
            return 2
        print(msg + "\n\n" + (__doc__ or ""))
        return 0
    app, rest, margin = argv[0], list(argv[1:]), 0.0
    if "--margin" in rest:
        i = rest.index("--margin")
        try:
            margin = float(rest[i + 1])
        except (IndexError, ValueError):
            print("error: --margin needs a number (0.01 = the challenger must be 1 % better)", file=sys.stderr)
            return 2
        del rest[i:i + 2]
    code, out = cli_call(lambda: retrain(app, rest, margin), note=" (champion unchanged)", codes={Locked: LOCKED})
    if code:
        return code
    line, _ = out
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

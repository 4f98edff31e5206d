"""``python -m pipelines.bench reliability [--cycles 20]``: retrain cycles with injected faults against a real
team server (PostgreSQL + ``mlflow server``, :mod:`pipelines.server`), auditing the registry after every cycle.

Each cycle runs ``python -m pipelines.retrain forecast`` as real processes, as cron would, under one fault in
turn: ``none``; ``corrupt_data`` (a bad number, a short row, a truncated file, dates out of order: one each
in rotation); ``kill_training`` (SIGKILL once the first epoch's checkpoint is written); ``server_down`` (the
tracking server is killed mid-training and restarted after the job gave up); ``concurrent`` (two retrains
started together). Challengers alternate between a properly trained model and a barely trained one
(lr 1e-7), so promotion has to tell them apart.

After every cycle the audit scores the champion afresh on the fixed holdout (loaded from the server) and checks:
the champion exists once there was one, its score never got worse, a change of champion is a logged
``promoted`` decision with a better challenger score, ``champion`` and ``challenger`` point to distinct
existing versions, every version is READY, the champion's run FINISHED, and each fault ended with its expected
exit code. The table and the totals are printed and logged to the ``bench`` experiment of the local store.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from core.datadir import data_dir
from pipelines.bench.sections import quiet, run_sections
from pipelines.bench.table import markdown
from pipelines.server import TeamServer

FAULTS = ("none", "corrupt_data", "kill_training", "server_down", "concurrent")
NAME = "forecast_reliability"
FAST = ["--model", "rlinear", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches", "5",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
LONG = ["--epochs", "60", "--trainer.patience", "0"]  # long enough to be interrupted mid-training


def corrupt(src: Path, dst: Path, kind: int) -> str:
    """Write a corrupted copy of an ETT csv; -> what was broken."""
    lines = src.read_text().splitlines(keepends=True)
    k = 2000 + 997 * kind
    if kind % 4 == 0:
        parts = lines[k].split(",")
        parts[3] = "n/a"
        lines[k] = ",".join(parts)
    elif kind % 4 == 1:
        lines[k] = ",".join(lines[k].split(",")[:-2]) + "\n"
    elif kind % 4 == 2:
        lines = lines[:k] + [lines[k][:15]]
    else:
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
    dst.write_text("".join(lines))
    return ("bad number", "short row", "truncated file", "dates out of order")[kind % 4] + f" at line {k + 1}"


class Harness:
    """The team server, a work folder, the holdout and the retrain processes of one reliability run."""

    def __init__(self, work: Path, server: TeamServer):
        self.work, self.server = work, server
        self.data = work / "latest.csv"
        shutil.copy(data_dir() / "forecast" / "ETTh1.csv", self.data)
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri, "FFN_MLRUNS": str(work / "mlruns"),
                    "FFN_CHECKPOINTS": str(work / "checkpoints"), "FFN_THREADS": "1",
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
        self.client = MlflowClient(server.uri)
        from pipelines.forecast import ForecastJob

        self.job = ForecastJob()
        self.holdout = self.job.data(self.job.resolve({"model": {"name": "rlinear"},
                                                           "data": {"data": str(self.data)}}))
        self.scores: dict[str, float] = {}

    def retrain(self, seed: int, good: bool, data: Path | None = None, extra: tuple = ()) -> subprocess.Popen:
        args = [sys.executable, "-m", "pipelines.retrain", "forecast", *FAST, "--epochs", "2", *extra,
                "--data", str(data or self.data), "--seed", str(seed), "--mlflow.model_name", NAME]
        if not good:
            args += ["--optim.lr", "1e-7"]
        return subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def wait_for_training(self, proc: subprocess.Popen, since: float, timeout: float = 300) -> bool:
        """True once this cycle's first checkpoint exists (the job is mid-training), False if it ended first."""
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if any(p.stat().st_mtime >= since for p in (self.work / "checkpoints").glob("forecast/*/last.ckpt")):
                return True
            time.sleep(0.2)
        return False

    def score(self, version: str) -> float:
        """The holdout MSE of a registered version, loaded from the server (cached: versions are immutable)."""
        if version not in self.scores:
            uri = self.client.get_model_version_download_uri(NAME, version)
            dst = tempfile.mkdtemp(dir=self.work)
            path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst, tracking_uri=self.server.uri)
            predictor = mlflow.pyfunc.load_model(path).unwrap_python_model().predictor
            self.scores[version] = self.job.score(predictor, self.holdout)
        return self.scores[version]

    def aliases(self) -> dict[str, str]:
        try:
            return {k: str(v) for k, v in self.client.get_registered_model(NAME).aliases.items()}
        except mlflow.exceptions.MlflowException:
            return {}

    def audit(self, before: dict | None) -> tuple[dict, list[str]]:
        """-> (champion state, violated invariants)."""
        bad = []
        versions = {str(v.version): v for v in self.client.search_model_versions(f"name='{NAME}'")}
        aliases = self.aliases()
        bad += [f"v{v} is {mv.status}" for v, mv in versions.items() if mv.status != "READY"]
        bad += [f"alias {a} -> missing v{v}" for a, v in aliases.items() if v not in versions]
        if aliases.get("challenger") and aliases.get("challenger") == aliases.get("champion"):
            bad.append("champion and challenger are the same version")
        champ = aliases.get("champion")
        if champ is None:
            if before:
                bad.append(f"champion lost (was v{before['version']})")
            return {}, bad
        if champ in versions and self.client.get_run(versions[champ].run_id).info.status != "FINISHED":
            bad.append(f"champion v{champ}'s run is not FINISHED")
        now = {"version": champ, "score": self.score(champ)}
        if before and champ != before["version"]:
            tags = versions[champ].tags
            if tags.get("retrain.decision") != "promoted" or \
                    float(tags["retrain.challenger_score"]) >= float(tags["retrain.champion_score"]):
                bad.append(f"v{champ} became champion without a logged better score")
            if now["score"] > before["score"] + 1e-9:
                bad.append(f"champion got worse: v{before['version']} {before['score']:.4f} -> "
                           f"v{champ} {now['score']:.4f}")
        return now, bad


def cycle(h: Harness, i: int, fault: str) -> dict:
    """Run one retrain cycle under ``fault``; -> its exit codes, what was expected and a note."""
    good, seed, t0 = i % 2 == 1, 100 + i, time.time()
    note = ""
    if fault == "none":
        procs = [h.retrain(seed, good)]
        expected = "0"
    elif fault == "corrupt_data":
        bad = h.work / f"corrupt{i}.csv"
        note = corrupt(h.data, bad, i // len(FAULTS))
        procs = [h.retrain(seed, good, data=bad)]
        expected = "2"
    elif fault in ("kill_training", "server_down"):
        procs = [h.retrain(seed, good, extra=tuple(LONG))]
        if not h.wait_for_training(procs[0], t0):
            note = "finished before the fault could be injected"
        elif fault == "kill_training":
            os.killpg(procs[0].pid, signal.SIGKILL)
            note = "SIGKILL after the first epoch"
        else:
            h.server.mlflow.stop(hard=True)
            note = "tracking server killed mid-training"
        expected = "-9" if fault == "kill_training" else "non-zero"
    else:
        good = True
        both = ("--epochs", "6")  # long enough to overlap whatever the start-up jitter
        procs = [h.retrain(seed, True, extra=both), h.retrain(seed + 1000, True, extra=both)]
        expected = "0 and 3"
    outs = [p.communicate(timeout=900) for p in procs]
    if fault == "server_down" and not h.server.mlflow.healthy():
        h.server.mlflow.start()
    codes = [p.returncode for p in procs]
    ok = {"0": codes == [0], "2": codes == [2], "-9": codes == [-9], "non-zero": codes[0] != 0,
          "0 and 3": sorted(codes) == [0, 3]}[expected]
    lines = [_summary(code, out, err) for code, (out, err) in sorted(zip(codes, outs), key=lambda p: p[0] != 0)]
    return {"codes": codes, "expected": expected, "ok": ok, "note": note, "lines": lines,
            "seconds": time.time() - t0, "good": good}


def _summary(code: int, out: str, err: str) -> str:
    """The retrain's one-line summary (stdout) or its error line; nothing for a killed process."""
    if code == 0 and out.strip():
        return out.strip().splitlines()[-1]
    said = [ln for ln in err.splitlines() if ln.startswith(("error:", "failed", "interrupted"))]
    return said[-1] if said else ""


def run_cycles(cycles: int, work: Path | None = None, log=print) -> dict:
    """Start a team server in ``work`` (a temp dir if None), run the cycles; -> totals and per-cycle rows."""
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="ffn-reliability-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user when we are root
    rows, totals = [], {"cycles": cycles, "violations": 0, "unexpected_exits": 0, "promotions": 0,
                        "champion_lost": 0, "worse_champion": 0}
    with TeamServer(work / "server") as server:
        h = Harness(work, server)
        state: dict = {}
        for i in range(cycles):
            fault = FAULTS[i % len(FAULTS)]
            c = cycle(h, i, fault)
            new, bad = h.audit(state or None)
            promoted = bool(state) and new.get("version") != state.get("version")
            totals["violations"] += len(bad)
            totals["unexpected_exits"] += not c["ok"]
            totals["promotions"] += promoted
            totals["champion_lost"] += any("champion lost" in b for b in bad)
            totals["worse_champion"] += any("got worse" in b for b in bad)
            row = [i + 1, fault, "good" if c["good"] else "bad", " ".join(map(str, c["codes"])), c["expected"],
                   f"v{state['version']} {state['score']:.4f}" if state else "-",
                   f"v{new['version']} {new['score']:.4f}" if new else "-",
                   "; ".join(bad) or "ok", " / ".join(filter(None, [c["note"], *c["lines"]]))[:150],
                   f"{c['seconds']:.0f}"]
            rows.append(row)
            log(" | ".join(map(str, row)))
            state = new or state
        exp = h.client.get_experiment_by_name("forecast")
        runs = h.client.search_runs([exp.experiment_id]) if exp else []
        totals["runs_left_running"] = sum(r.info.status == "RUNNING" for r in runs)  # killed with no chance to say so
        totals["versions"] = len(h.client.search_model_versions(f"name='{NAME}'"))
    totals["final_champion"] = state.get("version")
    totals["rows"] = rows
    if own:
        shutil.rmtree(work, ignore_errors=True)
    return totals


def table(res: dict) -> str:
    head = ["cycle", "fault", "challenger", "exit", "expected", "champion before", "champion after", "audit",
            "note / last line", "s"]
    keys = ("cycles", "violations", "unexpected_exits", "promotions", "champion_lost", "worse_champion",
            "final_champion", "versions", "runs_left_running")
    return markdown(head, res["rows"]) + "\n\n" + "  ".join(f"{k} {res[k]}" for k in keys)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench reliability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="one cycle per fault (5)")
    a = ap.parse_args(argv)
    a.sections = ["cycles"]
    if a.quick:
        a.cycles = len(FAULTS)
    quiet()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    result = {}

    def cycles(a):
        result.update(run_cycles(a.cycles))
        return table(result)

    code = run_sections("reliability", a, {"cycles": cycles}, {"cycles": a.cycles, "threads": "1 per retrain"})
    return code or int(result["violations"] > 0 or result["unexpected_exits"] > 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

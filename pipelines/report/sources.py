"""What the report reads from the MLflow store: bench tables with their provenance, and the default jobs' runs.

A bench table is the newest finished, non-quick bench run's artifact ``bench_<area>_<section>.md`` (tagged by
``pipelines.bench.sections.provenance``). A default-job run is the newest finished run in an app's experiment whose
logged configuration equals the job's defaults (runner options such as threads, the progress bar and MLflow names
aside; an option newer than the run counts as its default), so a user's experiments with other options never
stand for the app.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines.config import OPERATIONAL, flatten


@dataclass
class Table:
    """One bench section's table and the run that made it."""
    area: str
    section: str
    text: str
    run_id: str
    tags: dict

    def provenance(self) -> str:
        t = self.tags
        secs = t.get(f"bench.seconds.{self.section}")
        commit = t.get("bench.commit", "?")
        return (f"`{t.get('bench.command', 'python -m pipelines.bench ' + self.area)}` · MLflow run `{self.run_id}` · "
                f"commit `{commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''}` · code "
                f"`{t.get('bench.code_hash', '?')}` · {t.get('bench.threads', '?')} thread(s) of "
                f"{t.get('bench.host_cpus', '?')} cores · {t.get('bench.date', '?')}" + (f" · {secs} s" if secs else ""))


def bench_tables(client: MlflowClient, area: str) -> list[Table]:
    """Per section of ``area``, the newest finished non-quick run's table (sections in the order first seen)."""
    exp = client.get_experiment_by_name("bench")
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], f"tags.`bench.area` = '{area}' and tags.`bench.quick` = 'false' "
                              "and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    found: dict[str, Table] = {}
    for r in runs:
        for art in client.list_artifacts(r.info.run_id):
            m = re.fullmatch(rf"bench_{re.escape(area)}_(\w+)\.md", art.path)
            if m and m.group(1) not in found:
                text = Path(client.download_artifacts(r.info.run_id, art.path)).read_text()
                text = re.sub(r"\A## \w+ \(\d+s\)\n\n", "", text).strip()  # the bench's own heading
                found[m.group(1)] = Table(area, m.group(1), text, r.info.run_id, dict(r.data.tags))
    return list(found.values())


def default_run(client: MlflowClient, job):
    """The newest finished run of ``job``'s default configuration in its experiment, or None. A run records the
    options it changed (tag ``config.overrides``, ``{}`` for the default job); for a run older than that tag, its
    logged parameters are compared with today's defaults (an option the run predates counts as its default)."""
    exp = client.get_experiment_by_name(job.app)
    if exp is None:
        return None
    want = {k: str(v) for k, v in flatten(job.resolve({})).items() if not k.startswith(OPERATIONAL)}
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                order_by=["attributes.start_time DESC"]):
        tag = r.data.tags.get("config.overrides")
        if tag == "{}" or (tag is None and all(r.data.params.get(k, v) == v for k, v in want.items())):
            return r
    return None


def figures(client: MlflowClient, run) -> dict[str, Path]:
    """name -> local path of every PNG logged on ``run``."""
    return {a.path: Path(client.download_artifacts(run.info.run_id, a.path))
            for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".png")}


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table in ``text`` -> (header, rows of cells)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return [], []
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return cells[0], [r for r in cells[2:] if len(r) == len(cells[0])]


def number(cell: str) -> float | None:
    """The leading number of a cell ("81.2 ± 0.5" -> 81.2, "0.386" -> 0.386), or None."""
    m = re.match(r"\s*([-+]?\d+(?:\.\d+)?)", cell.replace(",", ""))
    return float(m.group(1)) if m else None

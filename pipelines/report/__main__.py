"""``python -m pipelines.report``: the generated result files and the results page, from the MLflow store.

- ``docs/results/<area>.md``: for every benchmark area (``python -m pipelines.bench <area>``) and each of its
  sections, the table of the newest finished, non-quick bench run that has it, headed by the command, run id,
  commit, code hash, threads and date that made it. An area with no such run keeps its file if it has one (a fresh
  clone has no runs), else gets a file saying which command makes it; a section no run in this store has keeps
  its block as it was.
- ``docs/results/img/<app>_<figure>.png`` and the README's table of apps: from the newest run of each app's default
  job (``python -m pipelines.<app>`` with its default options).
- ``--html DIR``: ``DIR/index.html``, one self-contained page (images embedded) with every app's headline,
  figures, bench plots and tables.

Nobody edits these files by hand: rerun the job or the bench, then this.

    python -m pipelines.report                         # docs/results/ and the README's table
    python -m pipelines.report --html report/          # and the page
    python -m pipelines.report --areas ffn --no-readme # some areas only
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.bench.__main__ import AREAS
from pipelines.report import page, results
from pipelines.report.sources import bench_tables, default_run, figures

DEFAULT_OUT = tracking.PROJECT / "docs" / "results"
README = tracking.PROJECT / "README.md"


def jobs() -> dict:
    from pipelines.retrain import jobs as registered

    return {app: job for app, job in registered().items() if app in results.APPS}


def forecast_by_horizon(client: MlflowClient, tables: list) -> list[tuple[str, Path]]:
    """The forecast-vs-truth figure of each horizon's first S-Mamba ETTh1 training in the newest complete bench
    forecast run (its child runs are the job's own runs)."""
    run_ids = {t.run_id for t in tables if t.section == "published"}
    exp = client.get_experiment_by_name("bench")
    out = []
    for rid in run_ids:
        children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{rid}'",
                                      order_by=["attributes.start_time ASC"])
        seen = set()
        for c in children:
            name = c.info.run_name or ""
            if name.startswith("s_mamba-ETTh1-") and name.split("-")[2] not in seen:
                seen.add(name.split("-")[2])
                figs = figures(client, c)
                if "forecast_vs_truth.png" in figs:
                    out.append((f"forecast vs truth, H = {name.split('-')[2]} ({name})", figs["forecast_vs_truth.png"]))
    return out


def bench_sections(area: str) -> tuple:
    """The sections of ``python -m pipelines.bench <area>`` in the order it runs them (() if it cannot say)."""
    try:
        return tuple(importlib.import_module(f"pipelines.bench.{area}").SECTIONS)
    except (ImportError, AttributeError):
        return ()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.report", description=__doc__.splitlines()[0])
    ap.add_argument("--areas", nargs="+", default=list(AREAS), choices=list(AREAS))
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="folder of the <area>.md files (default docs/results)")
    ap.add_argument("--readme", default=str(README), help="the README whose APPS-TABLE block is rewritten")
    ap.add_argument("--no-readme", action="store_true", help="leave the README and docs/results/img alone")
    ap.add_argument("--html", default=None, metavar="DIR", help="also write DIR/index.html, the results page")
    a = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking.activate())
    tables = {}
    for area in a.areas:
        path = out / f"{area}.md"
        tables[area] = found = bench_tables(client, area)
        if found:
            path.write_text(results.area_file(area, found, path.read_text() if path.exists() else "",
                                              bench_sections(area)))
            print(f"{path}: {len(found)} section(s) ({', '.join(t.section for t in found)})")
        elif path.exists():
            print(f"{path}: kept (no complete bench {area} run in {tracking.tracking_uri()})")
        else:
            path.write_text(results.placeholder(area))
            print(f"{path}: no complete run yet; make one with `python -m pipelines.bench {area}`")
    apps = jobs()
    runs = {app: default_run(client, job()) for app, job in apps.items()}
    figs = {app: figures(client, r) if r else {} for app, r in runs.items()}
    if not a.no_readme:
        for app, f in figs.items():
            results.copy_figures(app, f, out / "img")
        # a store without any default-job run (a test's, a fresh clone's) leaves the README's table as it is; an
        # app without one keeps its row
        readme = Path(a.readme)
        if any(r is not None for r in runs.values()) and results.update_readme(
                readme, results.apps_table(runs, results.readme_table(readme))):
            print(f"{a.readme}: the table of apps, from {sum(r is not None for r in runs.values())} default-job run(s)")
    if a.html:
        sections = []
        for app, (title, _, _) in results.APPS.items():
            r = runs.get(app)
            head = results.headline(app, r.data.metrics, r.data.params) if r else None
            extra = forecast_by_horizon(client, tables.get(app, [])) if app == "forecast" else []
            sections.append((app, title, page.app_section(app, title, head, figs.get(app, {}), tables.get(app, []),
                                                          extra)))
        core = [t for area in ("ffn", "ssm") for t in tables.get(area, [])]
        sections.append(("core", "core: FFN variants and the selective scan",
                         page.app_section("core", "core: FFN variants and the selective scan", "", {}, core)))
        d = Path(a.html)
        d.mkdir(parents=True, exist_ok=True)
        (d / "index.html").write_text(page.page(sections))
        print(f"{d / 'index.html'}: {len(sections)} sections")
    return 0


if __name__ == "__main__":
    sys.exit(main())

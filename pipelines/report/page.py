"""``python -m pipelines.report --html DIR``: one self-contained static page (images embedded, no script or style
from the network) with, per app, the headline against its paper or baseline, the default job's figures, plots
drawn from the bench tables and the tables themselves with the command and run that made them."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipelines.report.sources import Table, number, parse_markdown_table  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}table{border-collapse:collapse;font-size:.8em;margin:.6em 0}
td,th{border:1px solid #ccc;padding:2px 6px}th{background:#f4f4f4}.prov{font-size:.75em;color:#555}
.headline{font-size:1.1em;background:#f6f8fa;padding:.5em;border-left:4px solid #36c}
nav a{margin-right:1em}.missing{color:#a33}figure{display:inline-block;margin:.3em;vertical-align:top}"""


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def img_tag(data_b64: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data_b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def file_img(path: Path, caption: str) -> str:
    return img_tag(base64.b64encode(Path(path).read_bytes()).decode(), caption)


def table_html(text: str) -> str:
    """The markdown of a bench section (its pipe table and the notes around it) as HTML."""
    out, rows = [], []
    for ln in text.splitlines() + [""]:
        if ln.startswith("|"):
            rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
            continue
        if rows:
            head, body = rows[0], [r for r in rows[2:]]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows = []
        if ln.strip():
            out.append(f"<p>{html.escape(ln)}</p>")
    return "\n".join(out)


def _series_plot(title: str, xlabel: str, ylabel: str, series: dict[str, tuple[list, list]], kind: str = "line"):
    fig, ax = plt.subplots(figsize=(5.8, 3.4))
    names = list(series)
    for i, name in enumerate(names):
        xs, ys = series[name]
        if kind == "bar":
            w = 0.8 / len(names)
            ax.bar([j + i * w for j in range(len(xs))], ys, width=w, label=name)
            ax.set_xticks([j + 0.4 - w / 2 for j in range(len(xs))], xs, rotation=20, fontsize=7)
        else:
            ax.plot(xs, ys, "o-", label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def bench_plot(t: Table):
    """A figure drawn from a bench section's table, for the sections a practitioner reads as a curve; or None."""
    head, rows = parse_markdown_table(t.text)
    if not rows:
        return None
    col = {h: i for i, h in enumerate(head)}
    key = (t.area, t.section)
    if key == ("graph", "init") and {"depth", "init", "acc %"} <= set(col):
        s: dict = {}
        for r in rows:
            s.setdefault(r[col["init"]], ([], []))
            s[r[col["init"]]][0].append(number(r[col["depth"]]))
            s[r[col["init"]]][1].append(number(r[col["acc %"]]))
        return _series_plot("test accuracy by depth (Cora)", "layers", "accuracy %", s)
    if key == ("traffic", "labels"):
        fr = [h for h in head[1:] if h.endswith("labels")]
        s = {r[0]: ([h.split()[0] + " %" for h in fr], [number(r[col[h]]) for h in fr]) for r in rows}
        return _series_plot("label efficiency (macro-F1)", "labelled training flows", "macro-F1", s)
    if key == ("ais", "folds"):
        hz = [h for h in head if h.startswith("+") and "mean m" in h]
        s = {r[0]: ([h.split()[0] for h in hz], [number(r[col[h]]) for h in hz]) for r in rows
             if r[0] in ("dead reckoning", "damped turn (tau chosen on val)", "constant velocity") or "spadon" in r[0]}
        return _series_plot("error by horizon against dead reckoning", "horizon", "mean error m", s)
    if key == ("audio", "integration"):
        types = [h for h in head if h not in ("integration", "macro", "blind", "rephrased")]
        s = {r[0]: (types, [number(r[col[h]]) for h in types]) for r in rows}
        return _series_plot("accuracy by question type", "", "test accuracy", s, kind="bar")
    if key == ("spiking", "fsdd") and {"delays", "test acc %"} <= set(col):
        data = sorted({r[0] for r in rows if "paired" not in r[1]}, key=lambda d: [r[0] for r in rows].index(d))
        s = {d: ([], []) for d in ("none", "random", "learned")}
        for r in rows:
            if r[1] in s:
                s[r[1]][0].append(r[0])
                s[r[1]][1].append(number(r[col["test acc %"]]))
        return _series_plot("test accuracy: no / random / learned delays", "", "accuracy %", s, kind="bar") \
            if data else None
    if key == ("forecast", "published"):
        s = {}
        for r in rows:
            if r[col["data"]] == "ETTh1":
                s.setdefault(r[col["model"]], ([], []))
                s[r[col["model"]]][0].append(number(r[col["H"]]))
                s[r[col["model"]]][1].append(number(r[col["ours MSE"]]))
        return _series_plot("ETTh1 test MSE by horizon (ours)", "horizon H", "MSE", s) if s else None
    return None


def app_section(app: str, title: str, headline: str | None, figures: dict[str, Path], tables: list[Table],
                extra_figures: list[tuple[str, Path]] = ()) -> str:
    parts = [f'<h2 id="{app}">{html.escape(title)}</h2>']
    if headline is None:
        parts.append(f'<p class="missing">No run of the default job yet: <code>python -m pipelines.{app}</code>, then '
                     f"<code>python -m pipelines.report --html DIR</code>.</p>")
    else:
        parts.append(f'<p class="headline">{html.escape(headline)}</p>')
    parts += [file_img(p, f"{app}: {n}") for n, p in sorted(figures.items())]
    parts += [file_img(p, c) for c, p in extra_figures]
    for t in tables:
        fig = bench_plot(t)
        if fig is not None:
            parts.append(img_tag(png(fig), f"{t.area} {t.section}"))
    for t in tables:
        parts += [f"<h3>bench {html.escape(t.area)}: {html.escape(t.section)}</h3>",
                  f'<p class="prov">{html.escape(t.provenance())}</p>', table_html(t.text)]
    if not tables:
        parts.append(f'<p class="missing">No complete bench run: <code>python -m pipelines.bench '
                     f"{'ffn' if app == 'core' else app}</code>.</p>")
    return "\n".join(parts)


def page(sections: list[tuple[str, str, str]]) -> str:
    """sections: (anchor, title, html) -> the whole page."""
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>FFN pipelines: results</title>'
            f"<style>{STYLE}</style></head><body><h1>FFN pipelines: results</h1>"
            f"<p>Rendered by <code>python -m pipelines.report --html</code> from the MLflow store.</p><nav>{nav}</nav>"
            + "".join(body for _, _, body in sections) + "</body></html>")

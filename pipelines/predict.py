"""``python -m pipelines.predict MODEL_URI INPUT.csv [-o OUT.csv]``: predict with a logged model.

MODEL_URI is anything MLflow resolves: ``models:/forecast@champion``, ``models:/forecast/3``,
``runs:/<run_id>/model``. For the forecast app INPUT is recent history (a ``date`` column and the
training columns, at least ``lookback`` rows); the output is the next H steps with timestamps. For the traffic app
INPUT may be a packet capture or a folder of them (sniffed by magic bytes); the output is one row per flow. For the
AIS app INPUT may also be a raw NMEA log (plain or gzip, as training reads it); every vessel is forecast from one
``--as-of`` time (default: the newest report), stale vessels reported rather than forecast (``--max-age``).
From Python: ``mlflow.pyfunc.load_model(uri).predict(df, params={"as_of": ...})``.
"""
from __future__ import annotations

import argparse
import sys

from pathlib import Path

import mlflow
import pandas as pd

from apps.traffic.pcap import PCAP_MAGIC, PCAPNG_MAGIC

from core.datadir import DataError
from pipelines import tracking


def predict(model_uri: str, frame: pd.DataFrame, source: str = "input", **options) -> pd.DataFrame:
    tracking.activate()
    model = mlflow.pyfunc.load_model(model_uri)
    predictor = model.unwrap_python_model().predictor
    return predictor.predict(frame, source=source, **options)


def read_input(path: str) -> pd.DataFrame:
    """A CSV as text columns; a packet capture or a folder becomes one ``path`` row (the traffic app reads it); a raw
    NMEA log becomes its position reports (the AIS app's reader)."""
    p = Path(path)
    if p.is_dir():
        return pd.DataFrame({"path": [path]})
    with open(p, "rb") as f:
        head = f.read(4)
    if head == PCAPNG_MAGIC or head in PCAP_MAGIC:
        return pd.DataFrame({"path": [path]})
    from apps.ais.ingest import read, sniff

    try:
        kind = sniff(p)
    except DataError:
        kind = "csv"  # pandas says what is wrong with it
    if kind == "nmea":
        return read(p)[0]
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.predict", description=__doc__.splitlines()[0])
    ap.add_argument("model_uri", help="models:/<name>@champion, models:/<name>/<version> or runs:/<id>/model")
    ap.add_argument("input", help="CSV of recent history / reports, or a packet capture")
    ap.add_argument("-o", "--output", help="write the forecast here (default: print it)")
    ap.add_argument("--as-of", help="AIS: forecast every vessel from this time (unix seconds or a UTC date; default: "
                                    "the newest report)")
    ap.add_argument("--max-age", type=float, default=60.0,
                    help="AIS: a vessel whose last report is older than this (s) before --as-of is stale (default 60)")
    args = ap.parse_args(argv)
    options = {}
    if args.as_of is not None:
        try:
            options["as_of"] = float(args.as_of)
        except ValueError:
            try:
                options["as_of"] = pd.Timestamp(args.as_of, tz="UTC").timestamp()
            except ValueError:
                print(f"error: --as-of {args.as_of!r} is neither unix seconds nor a date", file=sys.stderr)
                return 2
    if args.max_age != 60.0:
        options["max_age"] = args.max_age
    try:
        frame = read_input(args.input)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        print(f"error: {args.input}: cannot read CSV ({e})", file=sys.stderr)
        return 2
    try:
        out = predict(args.model_uri, frame, source=args.input, **options)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except mlflow.exceptions.MlflowException as e:
        print(f"error: {args.model_uri}: {e.message}", file=sys.stderr)
        return 2
    if args.output:
        out.to_csv(args.output, index=False)
        print(f"wrote {len(out)} rows to {args.output}")
    else:
        print(out.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m pipelines.predict MODEL_URI INPUT.csv [-o OUT.csv]``: predict with a logged model.

MODEL_URI is anything MLflow resolves: ``models:/forecast@champion``, ``models:/forecast/3``,
``runs:/<run_id>/model``. For the forecast app INPUT is recent history (a ``date`` column and the
training columns, at least ``lookback`` rows); the output is the next H steps with timestamps.
From Python: ``mlflow.pyfunc.load_model(uri).predict(df)``.
"""
from __future__ import annotations

import argparse
import sys

import mlflow
import pandas as pd

from core.datadir import DataError
from pipelines import tracking


def predict(model_uri: str, frame: pd.DataFrame, source: str = "input") -> pd.DataFrame:
    tracking.activate()
    model = mlflow.pyfunc.load_model(model_uri)
    predictor = model.unwrap_python_model().predictor
    return predictor.predict(frame, source=source)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.predict", description=__doc__.splitlines()[0])
    ap.add_argument("model_uri", help="models:/<name>@champion, models:/<name>/<version> or runs:/<id>/model")
    ap.add_argument("input", help="CSV of recent history")
    ap.add_argument("-o", "--output", help="write the forecast here (default: print it)")
    args = ap.parse_args(argv)
    try:
        frame = pd.read_csv(args.input, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        print(f"error: {args.input}: cannot read CSV ({e})", file=sys.stderr)
        return 2
    try:
        out = predict(args.model_uri, frame, source=args.input)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except mlflow.exceptions.MlflowException as e:
        print(f"error: {args.model_uri}: {e.message}", file=sys.stderr)
        return 2
    if args.output:
        out.to_csv(args.output, index=False)
        print(f"wrote {len(out)} steps to {args.output}")
    else:
        print(out.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

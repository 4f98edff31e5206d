"""TSLib's M / S / MS feature modes, a column subset, and the shipped ETTh1 that makes the default job offline."""
import numpy as np
import pandas as pd
import pytest
import torch

from apps.forecast.data import SHIPPED, DataError, ForecastData, resolve
from apps.forecast.models import RLinear
from apps.forecast.predict import Forecaster
from apps.forecast.task import ForecastTask
from core.datadir import sha256


@pytest.mark.parametrize("features,n_in,out", [("M", 7, ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]),
                                               ("S", 1, ["OT"]), ("MS", 7, ["OT"])])
def test_feature_modes(features, n_in, out):
    dm = ForecastData("ETTh1", features=features)
    dm.setup()
    assert dm.n_vars == n_in and dm.out_columns == out
    assert dm.columns[-1] == "OT"  # TSLib moves the target last
    assert [dm.columns[i] for i in dm.targets] == out


def test_columns_subset_and_errors():
    dm = ForecastData("ETTh1", features="MS", columns=["OT", "HUFL", "LULL"])
    dm.setup()
    assert dm.columns == ["HUFL", "LULL", "OT"] and dm.out_columns == ["OT"]
    with pytest.raises(DataError, match="not in the file's columns"):
        ForecastData("ETTh1", columns=["nope"]).setup()
    with pytest.raises(DataError, match="target column 'Y'"):
        ForecastData("ETTh1", features="S", target="Y").setup()


def test_ms_scores_only_the_target():
    torch.manual_seed(0)
    task = ForecastTask(RLinear(3, 8, 4), targets=[2])
    pred, y = torch.zeros(2, 4, 3), torch.zeros(2, 4, 3)
    y[..., :2] = 100.0  # large errors on the other variates must not count
    y[..., 2] = 1.0
    assert float(torch.nn.functional.mse_loss(task.scored(pred), task.scored(y))) == 1.0


def test_forecaster_returns_only_the_target_for_ms(data_root):
    dm = ForecastData("ETTh1", features="MS", lookback=24, horizon=6)
    dm.setup()
    model = RLinear(dm.n_vars, 24, 6)
    f = Forecaster(model, dm.scaler, dm.columns, 24, 6, dm.freq, False, dm.out_columns)
    hist = pd.read_csv(data_root / "forecast" / "ETTh1.csv").iloc[:30]
    out = f.predict(hist)
    assert list(out.columns) == ["date", "OT"] and len(out) == 6
    full = f.forecast_windows(torch.as_tensor(hist[dm.columns].to_numpy(np.float32)[-24:])[None])[0]
    np.testing.assert_allclose(out["OT"].to_numpy(), full[:, -1].numpy(), rtol=1e-6)


def test_shipped_etth1_is_used_when_the_data_dir_lacks_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FFN_DATA_DIR", str(tmp_path))  # an empty data directory: no network needed
    path = resolve("ETTh1")
    assert path == SHIPPED / "ETTh1.csv"
    assert sha256(path) == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
    dm = ForecastData("ETTh1")
    dm.setup()
    assert len(dm.sets["test"]) == 2785

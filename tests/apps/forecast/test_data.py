"""The Time-Series-Library protocol on the real ETT CSVs, and clear errors for bad CSVs."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from apps.forecast.data import DataError, ForecastData, borders, read_csv


@pytest.fixture(scope="module")
def etth1(data_root):
    dm = ForecastData("ETTh1", lookback=96, horizon=96)
    dm.setup()
    return dm


def test_ett_borders_and_window_counts(etth1):
    assert etth1.kind == "ett_hour"
    assert etth1.starts == [0, 8640 - 96, 11520 - 96] and etth1.ends == [8640, 11520, 14400]
    # TSLib: len = rows - L - H + 1 per split
    assert {k: len(v) for k, v in etth1.sets.items()} == {"train": 8449, "val": 2785, "test": 2785}


def test_scaler_fit_on_train_rows_only(etth1):
    _, values, _ = read_csv(etth1.path)
    train = values[:8640]
    np.testing.assert_allclose(etth1.scaler.mean, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(etth1.scaler.std, train.std(0), rtol=1e-5)
    scaled_train = etth1.sets["train"].values
    torch.testing.assert_close(scaled_train.mean(0), torch.zeros(7), atol=1e-4, rtol=0)
    assert abs(float(etth1.sets["test"].values.mean())) > 1e-3  # test rows are not re-centred


def test_time_features_are_tslib_timef(etth1):
    marks = etth1.sets["train"].marks
    assert marks.shape[1] == 4  # hour, weekday, day of month, day of year
    # 2016-07-01 00:00 is a Friday (weekday 4), day 1, day-of-year 183
    torch.testing.assert_close(marks[0], torch.tensor([-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5]))
    torch.testing.assert_close(marks[1, 0], torch.tensor(1 / 23 - 0.5))


def test_every_test_window_is_evaluated(etth1):
    loader = etth1.test_dataloader()
    assert not loader.drop_last
    assert sum(len(b[0]) for b in loader) == 2785
    x, m, y = next(iter(loader))
    assert x.shape == (32, 96, 7) and m.shape == (32, 96, 4) and y.shape == (32, 96, 7)


def test_autoformer_protocol_drops_the_last_incomplete_test_batch(data_root):
    dm = ForecastData("ETTh2", horizon=336, batch_size=128, test_drop_last=True)
    dm.setup()
    assert sum(len(b[0]) for b in dm.test_dataloader()) == 2449 - 17  # the 17 final windows are not scored


def test_windows_are_contiguous_history_then_future(etth1):
    x, _, y = etth1.sets["test"][5]
    full = etth1.sets["test"].values
    torch.testing.assert_close(x, full[5:101])
    torch.testing.assert_close(y, full[101:197])


def test_custom_csv_uses_7_1_2_split(tmp_path, data_root):
    df = pd.read_csv(data_root / "forecast" / "ETTh2.csv").iloc[:2000].rename(columns={"OT": "load"})
    p = tmp_path / "mine.csv"
    df.to_csv(p, index=False)
    dm = ForecastData(str(p), lookback=48, horizon=24)
    dm.setup()
    assert dm.kind == "ratio_7_1_2"
    assert (dm.starts, dm.ends) == ([0, 1400 - 48, 1600 - 48], [1400, 1600, 2000])
    assert dm.columns[-1] == "load" and dm.n_vars == 7
    assert borders(2000, 48, "ratio_7_1_2") == (dm.starts, dm.ends)


def _bad(tmp_path, data_root, edit, name="bad.csv"):
    df = pd.read_csv(data_root / "forecast" / "ETTh1.csv", dtype=str).iloc[:600]
    df = edit(df)
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def _set(df, row, col, value):
    df.loc[row, col] = value
    return df


@pytest.mark.parametrize("edit,pattern", [
    (lambda d: d.drop(columns=["date"]), r"no date column"),
    (lambda d: _set(d, 10, "HULL", "abc"), r"line 12, column 'HULL': 'abc' is not a number"),
    (lambda d: _set(d, 20, "OT", "nan"), r"line 22, column 'OT': 'nan' is missing, NaN or infinite"),
    (lambda d: _set(d, 30, "MUFL", "inf"), r"line 32, column 'MUFL': 'inf' is missing, NaN or infinite"),
    (lambda d: _set(d, 40, "LULL", ""), r"line 42, column 'LULL': '' is missing"),
    (lambda d: _set(d, 7, "date", "yesterday"), r"line 9, column 'date': 'yesterday' is not a date"),
    (lambda d: d.iloc[:150], r"the train split has 105 rows .* fewer than lookback \+ horizon = 192"),
])
def test_bad_csv_gets_one_clear_error(tmp_path, data_root, edit, pattern):
    p = _bad(tmp_path, data_root, edit)
    with pytest.raises(DataError, match=pattern) as e:
        ForecastData(str(p)).setup()
    assert str(p) in str(e.value)


def test_ett_named_file_too_short(tmp_path, data_root):
    p = _bad(tmp_path, data_root, lambda d: d, name="ETTh1.csv")
    with pytest.raises(DataError, match=r"ETTh1.csv: the ETT split needs 14400 rows, the file has 600"):
        ForecastData(str(p)).setup()


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'ETTx9'.*ETTh1"):
        ForecastData("ETTx9").setup()
    with pytest.raises(DataError, match="no such file"):
        ForecastData(str(tmp_path / "nope.csv")).setup()


@pytest.mark.parametrize("kw", [{"horizon": 0}, {"horizon": -5}, {"lookback": 0}, {"batch_size": 0}])
def test_non_positive_sizes(kw):
    with pytest.raises(DataError, match="must be a positive integer"):
        ForecastData("ETTh1", **kw)


def test_registered_file_is_read_from_data_dir_without_network(tmp_path, data_root, monkeypatch):
    (tmp_path / "forecast").mkdir()
    shutil.copy(data_root / "forecast" / "ETTh2.csv", tmp_path / "forecast" / "ETTh2.csv")
    monkeypatch.setenv("FFN_DATA_DIR", str(tmp_path))
    dm = ForecastData("ETTh2")
    dm.setup()
    assert dm.path == tmp_path / "forecast" / "ETTh2.csv"
    assert dm.fingerprint()["data_sha256"] == "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b"

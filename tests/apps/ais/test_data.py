"""AIS windows: grouped vessel splits, train-only normalisation, interpolated targets, the baselines."""
import numpy as np
import pytest
import torch

from apps.ais.baselines import baselines, dead_reckoning
from apps.ais.data import AISData, vessel_fold
from apps.ais.geodesy import from_east_north, from_local, haversine, to_east_north, to_local
from apps.ais.metrics import position_errors, rpd


@pytest.fixture(scope="module")
def dm(data_root):
    d = AISData()
    d.setup()
    return d


def test_no_vessel_in_two_splits_and_folds_cover_every_vessel(dm):
    sets = {k: set(v["mmsi"]) for k, v in dm.sets.items()}
    assert not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"]) and not (sets["train"] & sets["val"])
    assert set(vessel_fold(np.array(sorted(sets["test"]))) % 5) == {0}
    assert len(dm.sets["test"]["x"]) > 500


def test_normalisation_comes_from_the_training_split_only(dm):
    from apps.ais.data import FLAGS

    x = dm.sets["train"]["x"].reshape(-1, dm.sets["train"]["x"].shape[-1])
    scaled = [i for i in range(x.shape[1]) if i not in FLAGS]
    np.testing.assert_allclose(dm.mean[scaled], x.mean(0)[scaled], rtol=1e-5, atol=1e-6)
    assert (dm.mean[list(FLAGS)] == 0).all() and (dm.std[list(FLAGS)] == 1).all()  # flags stay 0/1


def test_targets_are_interpolated_positions_at_the_horizons(dm):
    s = dm.sets["test"]
    w = 0
    g = dm.tracks[dm.tracks.mmsi == s["mmsi"][w]]
    t, lat = g.time.to_numpy(), g.lat.to_numpy()
    for i, h in enumerate(dm.horizons):
        assert s["true_lat"][w, i] == pytest.approx(np.interp(s["t0"][w] + h, t, lat), abs=1e-9)
    assert len(g[g.time <= s["t0"][w]]) >= dm.lookback


def test_dead_reckoning_follows_the_reported_course():
    """10 kn for a minute on four courses: east and north components each with their sign (course 090 alone would
    let a sign error in the north component pass)."""
    step = 10 * 1852 / 60
    d = dead_reckoning(np.full(4, 10.0), np.array([90.0, 0.0, 180.0, 225.0]), [60])
    np.testing.assert_allclose(d[:, 0], [[step, 0.0], [0.0, step], [0.0, -step],
                                         [-step / np.sqrt(2), -step / np.sqrt(2)]], atol=1e-9)


def test_geodesy_round_trips_and_haversine():
    lat, lon = from_local(np.array([300.0]), np.array([-400.0]), 55.0, 10.0)
    np.testing.assert_allclose(to_local(lat, lon, 55.0, 10.0), ([300.0], [-400.0]), rtol=1e-9)
    assert haversine(55.0, 10.0, lat[0], lon[0]) == pytest.approx(500.0, rel=1e-3)
    assert haversine(0.0, 0.0, 0.0, 1.0) == pytest.approx(111195.1, rel=1e-5)


def test_rpd_of_predicting_zero_is_200_percent():
    true = np.random.default_rng(0).normal(size=(50, 3, 2))
    np.testing.assert_allclose(rpd(np.zeros_like(true), true), [200.0] * 3)
    np.testing.assert_allclose(rpd(true, true), [0.0] * 3)


def test_track_frame_rotation_round_trips():
    x, c = torch.randn(8, 3, 2), torch.rand(8) * 360
    torch.testing.assert_close(to_east_north(from_east_north(x, c), c), x)
    ahead = to_east_north(torch.tensor([[[0.0, 1.0]]]), torch.tensor([90.0]))  # along-track on course 090 = east
    torch.testing.assert_close(ahead, torch.tensor([[[1.0, 0.0]]]), atol=1e-6, rtol=0)


def test_baselines_on_the_same_windows(dm):
    s = dm.sets["test"]
    b = baselines(s, dm.horizons)
    err_last = position_errors(b["last"], s["lat0"], s["lon0"], s["true_lat"], s["true_lon"])
    np.testing.assert_allclose(err_last[:, 0], haversine(s["lat0"], s["lon0"], s["true_lat"][:, 0],
                                                         s["true_lon"][:, 0]), rtol=1e-9)
    err_dr = position_errors(b["dr"], s["lat0"], s["lon0"], s["true_lat"], s["true_lon"]).mean(0)
    err_cv = position_errors(b["cv"], s["lat0"], s["lon0"], s["true_lat"], s["true_lon"]).mean(0)
    assert (err_dr < err_last.mean(0)).all() and (err_dr < err_cv).all()  # DR is the bar


def test_cleaning_drops_an_outlier_fix_but_not_the_good_fix_after_it():
    import pandas as pd

    from apps.ais.clean import clean

    t = np.arange(6) * 10.0
    lat = 55.0 + np.arange(6) * 0.0005  # ~55 m per 10 s: 11 kn
    lat[3] = 56.0  # one 110 km jump
    df = pd.DataFrame({"mmsi": 219000001, "time": t, "lat": lat, "lon": 10.0, "sog": 11.0, "cog": 0.0,
                       "heading": np.nan, "msg_type": 1, "second": np.arange(6)})
    out = pd.concat([df, df.iloc[[1]].assign(time=12.0)])  # plus a duplicate reception of report 1
    tracks, counts = clean(out)
    assert counts["impossible_jumps"] == 1 and counts["duplicate_receptions"] == 1
    assert list(tracks.time) == [0.0, 10.0, 20.0, 40.0, 50.0]


def _turning_track(mmsi: int, side: float):
    """A vessel at 10 kn turning at 0.4 deg/s to starboard (side +1) or, mirrored about north, to port (side -1);
    reports every 10 s, heading 3 degrees off the course."""
    import pandas as pd

    from apps.ais.clean import KNOT

    t = np.arange(0.0, 400.0, 10.0)
    course = side * np.clip(0.4 * (t - 150.0), 0.0, None)  # straight, then turning
    v = 10 * KNOT
    step = np.deg2rad(course)
    east = np.r_[0.0, np.cumsum(v * 10 * np.sin(step[:-1]))]
    north = np.r_[0.0, np.cumsum(v * 10 * np.cos(step[:-1]))]
    lat, lon = from_local(east, north, 55.0, 10.0)
    return pd.DataFrame({"mmsi": mmsi, "time": t, "lat": lat, "lon": lon, "sog": 10.0, "cog": course % 360,
                         "heading": (course + side * 3.0) % 360})


def test_a_mirrored_window_is_the_window_of_the_mirrored_track():
    """mirrored() (the training augmentation) of a starboard turn equals the windows of the same turn to port."""
    from apps.ais.data import make_windows, mirrored
    from apps.ais.geodesy import to_track_frame

    w = {}
    for side in (1.0, -1.0):
        w[side] = make_windows(_turning_track(1, side), 10, (30, 60, 120), 60.0, 1.0)
        e, n = to_local(w[side]["true_lat"], w[side]["true_lon"], w[side]["lat0"][:, None], w[side]["lon0"][:, None])
        w[side]["true_en"] = np.stack([e, n], -1)
    m = mirrored(w[1.0])
    assert np.abs(w[1.0]["omega"]).max() > 0.3  # the windows do turn
    np.testing.assert_allclose(m["x"], w[-1.0]["x"], atol=2e-4)
    np.testing.assert_allclose(m["omega"], w[-1.0]["omega"], atol=1e-9)
    frame = lambda en, cog: np.stack(to_track_frame(en[..., 0], en[..., 1], cog[:, None]), -1)  # noqa: E731
    np.testing.assert_allclose(frame(m["true_en"], w[1.0]["cog0"]), frame(w[-1.0]["true_en"], w[-1.0]["cog0"]),
                               atol=0.05)  # metres


def test_seed_ensemble_scores_the_mean_of_the_members_displacements(dm):
    """bench ais --ensemble: two members off dead reckoning by +e and -e score exactly as dead reckoning does."""
    from pipelines.bench.ais import _ensemble

    rng = np.random.default_rng(0)
    pred = {k: dm.sets[k]["dr"].astype(np.float64) for k in ("val", "test")}
    e = {k: rng.normal(0, 50, v.shape) for k, v in pred.items()}
    m = _ensemble(dm, [{k: pred[k] + e[k] for k in pred}, {k: pred[k] - e[k] for k in pred}])
    for h in dm.horizons:
        assert m[f"test_mean_m_{h}s"] == pytest.approx(m[f"dr_mean_m_{h}s"], rel=1e-9)
    val_dr = np.linalg.norm(pred["val"] - dm.sets["val"]["true_en"], axis=-1).mean()
    assert m["val_mean_m"] == pytest.approx(val_dr, rel=1e-9)
    single = _ensemble(dm, [{k: pred[k] + e[k] for k in pred}])
    assert single["test_mean_m_120s"] > m["test_mean_m_120s"]  # one noisy member is worse than their mean


def test_history_pads_short_tracks_and_keeps_the_window_s_own_reports():
    """window_features(history=20) at report 12: the last 10 rows are the 10-report window's, the 7 rows before
    them repeat the track's first report (row 7)."""
    from apps.ais.data import FEATURES, window_features

    g = _turning_track(1, 1.0)
    arrays = [g[c].to_numpy(dtype=float) for c in ("time", "lat", "lon", "sog", "cog", "heading")]
    x10, _, _ = window_features(*arrays, 12, 10)
    x20, e, _ = window_features(*arrays, 12, 10, 20)
    assert x10.shape == (10, len(FEATURES)) and x20.shape == (20, len(FEATURES)) and len(e) == 13
    np.testing.assert_allclose(x20[-10:], x10)
    np.testing.assert_allclose(x20[:7], np.repeat(x20[7:8], 7, 0))


def test_serving_feeds_the_model_the_same_history_as_training(dm):
    """TrackPredictor builds the window of a vessel's last reports exactly as AISData did for that test window."""
    from apps.ais.predict import TrackPredictor

    assert dm.history > dm.lookback
    s = dm.sets["test"]
    w = int(np.argmax([((dm.tracks.mmsi == m) & (dm.tracks.time <= t)).sum() for m, t in zip(s["mmsi"][:300],
                                                                                             s["t0"][:300])]))
    g = dm.tracks[(dm.tracks.mmsi == s["mmsi"][w]) & (dm.tracks.time <= s["t0"][w])]
    assert len(g) > dm.lookback  # the window has more history than its own 10 reports

    class Spy:
        def eval(self):
            return self

        def __call__(self, x, base, cog):
            self.x = x
            return base

    spy = Spy()
    TrackPredictor(spy, dm.lookback, dm.horizons, dm.mean, dm.std, history=dm.history).predict(g)
    np.testing.assert_allclose(spy.x[0].numpy(), dm.normalise(s["x"][w]), atol=1e-5)


def test_stream_batches_give_each_ensemble_member_its_own_shuffle():
    """Every batch is K equal chunks; over an epoch chunk k runs through its own permutation of all windows."""
    from apps.ais.data import StreamBatches

    torch.manual_seed(0)
    sampler = StreamBatches(range(10), 4, streams=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 and [len(b) for b in batches] == [12, 12, 6]
    streams = [sum((b[k * len(b) // 3: (k + 1) * len(b) // 3] for b in batches), []) for k in range(3)]
    assert all(sorted(s) == list(range(10)) for s in streams)
    assert len({tuple(s) for s in streams}) == 3


def test_lightning_can_give_the_stream_batches_a_distributed_sampler():
    """--trainer.strategy ddp with an ensemble: Lightning re-creates the batch sampler around a DistributedSampler
    (it refused a plain Sampler), keeping ``streams``; each process then shuffles its own shard."""
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler, TensorDataset

    from apps.ais.data import StreamBatches

    ds = TensorDataset(torch.arange(20))
    with _replace_dunder_methods(BatchSampler):  # as Lightning calls train_dataloader
        dl = DataLoader(ds, batch_sampler=StreamBatches(SequentialSampler(ds), 4, streams=3))
    dl = _update_dataloader(dl, DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False))
    assert dl.batch_sampler.streams == 3
    batches = [b[0].tolist() for b in dl]
    assert [len(b) for b in batches] == [12, 12, 6]
    chunks = [sum((b[k * len(b) // 3: (k + 1) * len(b) // 3] for b in batches), []) for k in range(3)]
    assert all(sorted(c) == list(range(1, 20, 2)) for c in chunks)


def test_vectorised_windows_equal_the_per_window_loop(dm):
    """make_windows (vectorised per vessel) against the loop it replaced (tests/apps/ais/reference_windows.py), on
    the real DMA tracks: every array, every window, the same order; and the short-track padding at history 20."""
    from apps.ais.data import make_windows
    from tests.apps.ais import reference_windows as ref

    for lookback, history in ((10, 20), (5, 5)):
        got = make_windows(dm.tracks, lookback, dm.horizons, dm.max_gap, dm.min_sog, history)
        want = ref.make_windows(dm.tracks, lookback, dm.horizons, dm.max_gap, dm.min_sog, history)
        assert got.keys() == want.keys() and len(got["x"]) > 1000
        for k in want:
            if k == "no_motion":
                assert got[k] == want[k]
            else:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=k)

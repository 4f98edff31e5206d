"""The AIS training loss."""
import pytest
import torch

from apps.ais.task import TrackForecaster


def test_norm_loss_is_the_mean_distance_per_horizon_not_per_coordinate():
    task = TrackForecaster(torch.nn.Identity(), (30, 60), loss="norm")
    want = torch.zeros(2, 2, 2)
    corr = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    assert task.fit_loss(corr, want).item() == pytest.approx((5 + 0 + 1 + 1) / 4)
    huber = TrackForecaster(torch.nn.Identity(), (30, 60), loss="huber").fit_loss(corr, want).item()
    assert huber == pytest.approx(torch.nn.functional.smooth_l1_loss(corr, want).item())
    with pytest.raises(ValueError, match="unknown loss"):
        TrackForecaster(torch.nn.Identity(), (30,), loss="mse")


def test_an_ensemble_predicts_the_mean_and_trains_each_member_on_its_own_loss():
    """--model.members K: the loss is the mean of the members' own losses, not the loss of their mean (which would
    let one member cancel another's error and give every member the same gradient)."""
    from apps.ais.models import Ensemble, build_model

    torch.manual_seed(0)
    ens = build_model("gru", 5, 3, members=2, hidden=8)
    assert isinstance(ens, Ensemble) and len(ens.members) == 2
    x = torch.randn(4, 6, 5)
    torch.testing.assert_close(ens(x), (ens.members[0](x) + ens.members[1](x)) / 2)
    task = TrackForecaster(ens, (30, 60, 120))
    task.log = lambda *a, **k: None
    batch = (x, torch.randn(4, 3, 2), torch.randn(4, 3, 2) * 50, torch.rand(4) * 360, torch.arange(4))
    loss = task.training_step(batch, 0)
    alone = []
    for m in ens.members:
        t = TrackForecaster(m, (30, 60, 120))
        t.log = lambda *a, **k: None
        alone.append(t.training_step(batch, 0))
    assert loss.item() == pytest.approx(torch.stack(alone).mean().item(), rel=1e-6)
    loss.backward()
    g = [torch.cat([p.grad.flatten() for p in m.parameters()]) for m in ens.members]
    assert not torch.allclose(g[0], g[1])
    with pytest.raises(ValueError, match="members must be >= 1"):
        build_model("gru", 5, 3, members=0)


def test_streamed_members_each_train_on_their_own_chunk_of_the_batch():
    """StreamBatches feeds K shuffles as K chunks: member k's loss is on chunk k alone, against chunk k's targets."""
    from apps.ais.models import build_model

    torch.manual_seed(0)
    ens = build_model("gru", 5, 3, members=2, hidden=8)
    x = torch.randn(6, 6, 5)
    out = ens.member_outputs(x, streams=True)
    torch.testing.assert_close(out, torch.stack([ens.members[0](x[:3]), ens.members[1](x[3:])]))
    task = TrackForecaster(ens, (30, 60, 120), streams=True)
    task.log = lambda *a, **k: None
    batch = (x, torch.randn(6, 3, 2), torch.randn(6, 3, 2) * 50, torch.rand(6) * 360, torch.arange(6))
    loss = task.training_step(batch, 0)
    alone = []
    for k, m in enumerate(ens.members):
        t = TrackForecaster(m, (30, 60, 120))
        t.log = lambda *a, **k: None
        alone.append(t.training_step(tuple(b[3 * k: 3 * k + 3] for b in batch), 0))
    assert loss.item() == pytest.approx(torch.stack(alone).mean().item(), rel=1e-6)


def test_an_ensemble_keeps_each_member_at_its_own_best_validation_epoch():
    """Member 0 is best at the third validation, member 1 at the second: the ensemble predicts with those weights
    (not with one shared epoch's, not with the last), and the metric is the mean of the members' best errors."""
    from apps.ais.models import build_model

    torch.manual_seed(0)
    ens = build_model("gru", 5, 3, members=2, hidden=8)
    x = torch.randn(4, 6, 5)
    snaps = []
    for errs in ([3.0, 5.0], [4.0, 2.0], [1.0, 6.0], [2.0, 3.0]):
        with torch.no_grad():
            for p in ens.members.parameters():
                p.add_(torch.randn_like(p))
        snaps.append([m(x) for m in ens.members])
        metric = ens.keep_best(torch.tensor(errs))
    assert metric.item() == pytest.approx((1.0 + 2.0) / 2)
    torch.testing.assert_close(ens(x), (snaps[2][0] + snaps[1][1]) / 2)


def test_both_lstm_directions_reach_the_head_from_the_whole_window():
    """Spadon's bidirectional LSTM: replacing the early reports must change the backward direction's features too
    (with ``out[:, -1]`` the backward half had read only the newest report)."""
    from apps.ais.models import Spadon

    torch.manual_seed(0)
    m = Spadon(n_features=10, horizons=3).eval()
    x = torch.randn(4, 20, 10)
    y = x.clone()
    y[:, :17] = torch.randn(4, 17, 10)  # only reports 1-17 of 20 differ
    with torch.no_grad():
        fx, fy = (m.features(torch.cat([m.conv(v.transpose(1, 2)).transpose(1, 2), v], -1)) for v in (x, y))
    hidden = m.lstm.hidden_size
    assert (fx[:, hidden:] - fy[:, hidden:]).abs().min() > 0  # backward: every window's features moved
    assert (fx[:, :hidden] - fy[:, :hidden]).abs().max() > 1e-4

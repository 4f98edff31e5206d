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

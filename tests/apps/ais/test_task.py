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

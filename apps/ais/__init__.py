"""AIS vessel tracking: raw AIS -> clean irregular tracks -> position forecasting (Spadon et al. 2023)."""

"""Long-term multivariate forecasting: S-Mamba, iTransformer, RLinear on Time-Series-Library CSVs."""

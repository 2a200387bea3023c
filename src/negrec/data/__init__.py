"""Interactions, loaders, filtering, splits, synthetic data and batching."""

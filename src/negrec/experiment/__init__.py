"""Typed configs, the runner, run directories and reports."""

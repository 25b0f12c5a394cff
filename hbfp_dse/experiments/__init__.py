"""Experiments: sweep files, the results store, the sweep runner, reports and search."""

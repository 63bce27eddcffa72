"""Evaluation harness: case files and importers, metrics, statistics (runner, reports and CLI build on these)."""

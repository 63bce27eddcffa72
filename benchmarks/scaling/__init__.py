"""Parts of the scale benchmark (benchmarks/scale.py): corpus, per-store measurement, service run, page."""

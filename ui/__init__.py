"""User-facing entry points: the ``rag`` command line, the web console assets, Open WebUI wiring."""

"""The ``rag`` command: the one place that knows every part (``python -m onprem_rag`` is the same)."""

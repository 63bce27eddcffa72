"""Embedders adapters, chosen by URL scheme in rag.registry."""

"""Ingestion: loaders, chunking, sync state and the worker that ties them together."""

"""onprem-rag core: types, errors, configuration, backend registry, retrieval and answering."""

__version__ = "0.1.0"

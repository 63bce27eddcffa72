"""Retrievers for LangChain and LlamaIndex that call the service's ``/v1/search`` (extra ``integrations``)."""

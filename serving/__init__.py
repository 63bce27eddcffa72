"""The retrieval service: an OpenAI-compatible FastAPI app over the RAG pipeline."""

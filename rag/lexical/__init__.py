"""Lexical search: tokenising (``tokens``), reciprocal rank fusion (``fusion``) and the BM25 index (``index``).

Import from the submodules (``from rag.lexical.tokens import make_tokenizer``).
"""

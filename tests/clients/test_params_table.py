"""The chat-parameter table in docs/service.md is the one the code renders, from the adapters' own features."""

from __future__ import annotations

from rag.chat import features_of
from rag.chat.extractive import ExtractiveChat
from rag.chat.llamacpp import LlamaCppChat
from rag.chat.ollama import OllamaChat
from rag.chat.openai import OpenAIChat
from rag.chat.params import BACKENDS, render_table
from tests.serving.conftest import REPO


def test_docs_carry_the_rendered_chat_parameter_table() -> None:
    docs = (REPO / "docs" / "service.md").read_text()
    assert render_table() in docs, (
        "regenerate: python -c 'from rag.chat.params import render_table; print(render_table())'"
    )


def test_the_table_columns_hold_the_features_the_adapters_declare() -> None:
    declared = {
        "openai": features_of(OpenAIChat(None, "m", name="openai+http://h/v1?model=m", endpoint="http://h/v1")),
        "ollama": features_of(OllamaChat(None, "m", name="ollama://h?model=m", host="http://h")),
        "extractive": features_of(ExtractiveChat()),
        # Built without a model file or llama_cpp: the class declares no features at all.
        "llamacpp": frozenset() if not hasattr(LlamaCppChat, "features") else None,
    }
    columns = {name.split("`")[1].split(":")[0].split("+")[0]: features for name, features in BACKENDS}
    assert columns == declared

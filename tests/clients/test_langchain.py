"""LangChain's ``ChatOpenAI`` against a real ``rag serve``: invoke, stream, structured output."""

from __future__ import annotations

import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.clients.conftest import QUESTION
from tests.fakes import FakeOpenAIServer
from tests.serving.conftest import MODEL, RagServer

pytestmark = pytest.mark.slow


class GpuCount(BaseModel):
    """How many GPUs, and the answer in words."""

    answer: str
    gpus: int


def chat_model(server: RagServer, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="x", model=MODEL, max_retries=0, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_invoke_returns_the_cited_answer(extractive: RagServer) -> None:
    reply = chat_model(extractive).invoke(QUESTION)
    assert "64 GPUs" in str(reply.content) and "[1]" in str(reply.content)
    assert reply.response_metadata["finish_reason"] == "stop"


def test_stream_yields_the_answer_in_pieces(extractive: RagServer) -> None:
    pieces = [str(chunk.content) for chunk in chat_model(extractive, stream_usage=True).stream(QUESTION)]
    assert len(pieces) > 3
    assert "64 GPUs" in "".join(pieces)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output_parses_through_a_json_capable_backend(
    llm: RagServer, model_server: FakeOpenAIServer, method: str
) -> None:
    result = chat_model(llm).with_structured_output(GpuCount, method=method).invoke(QUESTION)  # type: ignore[arg-type]
    assert isinstance(result, GpuCount) and result.gpus == 1 and result.answer
    sent = model_server.requests[-1]
    assert ("tools" in sent) == (method == "function_calling")
    assert ("response_format" in sent) == (method == "json_schema")
    # The retrieved passages are still in the prompt.
    assert "64 GPUs" in sent["messages"][0]["content"]


def test_json_mode_returns_the_models_json_object(llm: RagServer, model_server: FakeOpenAIServer) -> None:
    structured = chat_model(llm).with_structured_output(None, method="json_mode")
    result = structured.invoke(QUESTION + " Reply in JSON.")
    # The fake model's JSON mode answers {"answer": "Echo: ..."}.
    assert isinstance(result, dict) and str(result["answer"]).startswith("Echo:")
    assert model_server.requests[-1]["response_format"] == {"type": "json_object"}


def test_with_structured_output_against_the_extractive_backend_is_a_clear_400(extractive: RagServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat_model(extractive).with_structured_output(GpuCount).invoke(QUESTION)
    assert caught.value.param == "response_format"
    assert "extractive" in caught.value.message

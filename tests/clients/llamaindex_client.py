"""Run in .venv-clients: LlamaIndex's OpenAILike against a rag server, in completion and chat mode.

Usage: python llamaindex_client.py BASE_URL QUESTION   (prints one JSON line with what it got)
"""

from __future__ import annotations

import json
import sys

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike


def main() -> None:
    """Ask the question four ways and print the answers."""
    base_url, question = sys.argv[1], sys.argv[2]
    common = {"model": "rag", "api_base": base_url, "api_key": "x", "max_retries": 0, "timeout": 60}
    completion = OpenAILike(**common)  # the default: is_chat_model=False, so /v1/completions
    chat = OpenAILike(**common, is_chat_model=True)
    messages = [ChatMessage(role="user", content=question)]
    result = {
        "complete": completion.complete(question).text,
        "stream_complete": [r.delta for r in completion.stream_complete(question)],
        "chat": chat.chat(messages).message.content,
        "stream_chat": [r.delta for r in chat.stream_chat(messages)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

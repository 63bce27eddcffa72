"""Protocol-faithful fakes of services that cannot run here (Ollama, the OpenAI API); not the services.

Each is a real HTTP server on a free loopback port replaying the service's wire format with canned,
deterministic answers. Pytest fixtures for them live in ``tests/conftest.py``.
"""

from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer

__all__ = ["FakeOllamaServer", "FakeOpenAIServer"]

"""Targets that are a running onprem-rag service, reached over its HTTP API.

``--target http://host:8000/v1?model=rag`` (or ``service+http://`` / ``https://`` / ``service+https://``): the
service retrieves and answers by itself, so nothing is retrieved locally for such a target. Per question:

* ``POST /v1/search`` gives what the service retrieves (ranked source ids) for the retrieval metrics; a
  service without that route (404) falls back to the cited sources, in citation order.
* ``POST /v1/chat/completions`` with ``stream: true`` gives the answer, the time to the first content token
  and the cited sources: the stream carries them as Open WebUI ``source`` events whose ids are the same
  ``source`` values the non-streaming ``sources`` extension field lists. With ``?stream=0`` in the target
  the answer is taken non-streaming instead and the cited ids come from ``sources``; there is then no TTFT.

Query parameters of the target: ``model`` (default ``rag``), ``stream`` (``1``/``0``), ``search`` (``1``/``0``).
An API key for the service is read from ``RAG_EVAL_SERVICE_API_KEY`` (never from the URL).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from rag.config import eval_service_api_key
from rag.errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from rag.types import Usage

SERVICE_SCHEMES = frozenset({"http", "https", "service+http", "service+https"})


def is_service_target(target: str) -> bool:
    """Whether a target names a running service (``http://``, ``service+http://``, ...) rather than a chat backend."""
    return urlsplit(target).scheme.lower() in SERVICE_SCHEMES


class ServiceError(UpstreamError):
    """The service answered with an error; ``status`` is its HTTP status (so 429/5xx are retried)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message, code=code or "upstream_error")
        self.status = status


@dataclass
class ServiceAnswer:
    """What the service gave for one question."""

    text: str
    cited: list[str]
    retrieved: list[str]
    retrieval_ms: float
    ttft_ms: float | None
    total_ms: float
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    # Texts of the retrieved chunks (from /v1/search), for an LLM judge; empty without search.
    passages: list[str] = field(default_factory=list)


def _flag(query: dict[str, list[str]], name: str, default: bool) -> bool:
    values = query.get(name)
    if not values:
        return default
    value = values[-1].strip().lower()
    if value not in {"1", "0", "true", "false", "yes", "no"}:
        raise InvalidRequest(f"target parameter {name}={values[-1]!r}: use 1 or 0")
    return value in {"1", "true", "yes"}


def _error_of(response: httpx.Response) -> ServiceError:
    try:
        body = response.json()
        error = body.get("error") or {}
        message, code = str(error.get("message") or response.text[:300]), error.get("code")
    except (ValueError, AttributeError):
        message, code = response.text[:300], None
    return ServiceError(response.status_code, f"the service answered {response.status_code}: {message}", code)


class ServiceTarget:
    """A running service as an evaluation target; one HTTP client per target."""

    def __init__(self, target: str, timeout_s: float = 120.0, api_key: str | None = None) -> None:
        parts = urlsplit(target)
        scheme = parts.scheme.lower().removeprefix("service+")
        if parts.scheme.lower() not in SERVICE_SCHEMES or not parts.netloc:
            raise InvalidRequest(f"service target {target!r}: expected http://host:port/v1?model=rag")
        query = parse_qs(parts.query)
        path = parts.path.rstrip("/") or "/v1"
        self.target = target
        self.base_url = urlunsplit((scheme, parts.netloc, path, "", ""))
        self.model = (query.get("model") or ["rag"])[-1]
        self.stream = _flag(query, "stream", True)
        self.use_search = _flag(query, "search", True)
        key = api_key if api_key is not None else eval_service_api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=headers)
        self._search_missing = False

    @property
    def name(self) -> str:
        """The target as given."""
        return self.target

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = await self._client.post(path, json=body)
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"{self.base_url}{path} did not answer in time") from e
        except httpx.TransportError as e:
            raise UpstreamUnavailable(f"cannot reach {self.base_url}{path}: {e}") from e
        return response

    async def search(self, question: str) -> tuple[list[tuple[str, str]] | None, float]:
        """(source, text) of the chunks the service retrieves, best first (None: it has no search route)."""
        if not self.use_search or self._search_missing:
            return None, 0.0
        start = time.perf_counter()
        response = await self._post("/search", {"query": question})
        ms = (time.perf_counter() - start) * 1000
        if response.status_code == 404:
            self._search_missing = True
            return None, 0.0
        if response.status_code != 200:
            raise _error_of(response)
        return [(str(hit["source"]), str(hit.get("text", ""))) for hit in response.json().get("data", [])], ms

    async def ask(self, question: str, seed: int | None = None) -> ServiceAnswer:
        """Search, then ask the question; timings are measured here, on the client side."""
        hits, retrieval_ms = await self.search(question)
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": question}]}
        if seed is not None:
            body["seed"] = seed
        if self.stream:
            answer = await self._streamed(body)
        else:
            answer = await self._complete(body)
        answer.retrieved = [source for source, _ in hits] if hits is not None else list(answer.cited)
        answer.passages = [text for _, text in hits or []]
        answer.retrieval_ms = retrieval_ms
        return answer

    async def _complete(self, body: dict[str, Any]) -> ServiceAnswer:
        start = time.perf_counter()
        response = await self._post("/chat/completions", body)
        total_ms = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            raise _error_of(response)
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        cited = list(dict.fromkeys(str(s["source"]) for s in data.get("sources") or []))
        return ServiceAnswer(
            text=choice["message"]["content"] or "",
            cited=cited,
            retrieved=[],
            retrieval_ms=0.0,
            ttft_ms=None,
            total_ms=total_ms,
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    async def _streamed(self, body: dict[str, Any]) -> ServiceAnswer:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        parts: list[str] = []
        cited: list[str] = []
        usage, finish, ttft_ms = Usage(), "stop", None
        start = time.perf_counter()
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _error_of(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    event = json.loads(payload)
                    if "error" in event:  # a failure after the stream started
                        err = event["error"] or {}
                        raise ServiceError(502, f"the service's stream failed: {err.get('message')}", err.get("code"))
                    source = (event.get("event") or {}).get("data", {}).get("source", {})
                    if source.get("id"):
                        cited.append(str(source["id"]))
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if ttft_ms is None:
                                ttft_ms = (time.perf_counter() - start) * 1000
                            parts.append(text)
                        finish = choice.get("finish_reason") or finish
                    if event.get("usage"):
                        u = event["usage"]
                        usage = Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"{self.base_url}/chat/completions did not answer in time") from e
        except httpx.TransportError as e:
            raise UpstreamUnavailable(f"cannot reach {self.base_url}/chat/completions: {e}") from e
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
            raise ServiceError(502, f"the service sent a malformed stream event: {e}") from e
        return ServiceAnswer(
            text="".join(parts),
            cited=list(dict.fromkeys(cited)),
            retrieved=[],
            retrieval_ms=0.0,
            ttft_ms=ttft_ms,
            total_ms=(time.perf_counter() - start) * 1000,
            usage=usage,
            finish_reason=finish,
        )

"""ChainChat: failover before the first token only, retries, circuit breaker, probes, public-endpoint policy."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rag.chain import ChainChat, ChainPolicy, trace
from rag.errors import InvalidRequest, UpstreamUnavailable
from rag.types import ChatRequest, Chunk, Delta, GenParams, Message, ScoredChunk
from tests.serving.doubles import ScriptedChat


@dataclass
class Named(ScriptedChat):
    label: str = "a"

    @property
    def name(self) -> str:
        return self.label


def request(groups: tuple[str, ...] = ("public",)) -> ChatRequest:
    chunk = Chunk(id="c", text="t", source="s", groups=groups)
    return ChatRequest(messages=(Message("user", "q"),), sources=(ScoredChunk(chunk, 1.0),), question="q")


async def drain(chain: ChainChat, req: ChatRequest | None = None) -> str:
    return "".join([d.text async for d in chain.stream(req or request())])


FAST = ChainPolicy(retries=0, backoff_s=0.0, probe_interval_s=0, breaker_failures=2, breaker_reset_s=60)


async def test_fails_over_before_the_first_token_and_reports_the_backend() -> None:
    a, b = Named(label="a", fail_at=0), Named(label="b")
    moves: list[tuple[str, str]] = []
    chain = ChainChat([a, b], FAST, on_failover=lambda f, t: moves.append((f, t)))
    with trace() as t:
        assert await drain(chain) == "The answer is here [1]."
    assert t.backend == "b"
    assert t.failures and t.failures[0][0] == "a"
    assert moves == [("a", "b")]


async def test_no_failover_once_a_token_was_sent() -> None:
    a, b = Named(label="a", fail_at=2), Named(label="b")
    chain = ChainChat([a, b], FAST)
    got: list[str] = []
    with pytest.raises(UpstreamUnavailable):
        async for d in chain.stream(request()):
            got.append(d.text)
    assert got == ["The", " answer"]
    assert b.requests == []


async def test_retries_the_same_backend_with_backoff_first() -> None:
    class Flaky(Named):
        async def stream(self, req: ChatRequest):  # type: ignore[override]
            self.fail_at = 0 if not self.requests else None
            async for d in super().stream(req):
                yield d

    a, b = Flaky(label="a"), Named(label="b")
    chain = ChainChat([a, b], ChainPolicy(retries=1, backoff_s=0.01, probe_interval_s=0))
    with trace() as t:
        await drain(chain)
    assert t.backend == "a" and len(a.requests) == 2 and b.requests == []


async def test_breaker_skips_a_failing_backend_and_a_probe_closes_it() -> None:
    a, b = Named(label="a", fail_at=0), Named(label="b")
    chain = ChainChat([a, b], FAST)
    for _ in range(2):
        await drain(chain)
    assert chain.breakers["a"].is_open
    await drain(chain)
    assert len(a.requests) == 2  # skipped while open
    a.fail_at, a.healthy = None, True
    assert (await chain.probe())["a"] is True
    with trace() as t:
        await drain(chain)
    assert t.backend == "a"


async def test_every_backend_failing_is_503_naming_each() -> None:
    chain = ChainChat([Named(label="a", fail_at=0), Named(label="b", fail_at=0)], FAST)
    with pytest.raises(UpstreamUnavailable, match=r"every chat backend failed \(a: .*b: "):
        await drain(chain)


async def test_restricted_documents_never_reach_a_public_endpoint() -> None:
    private = Named(label="openai+http://vllm:8000/v1?model=x", fail_at=0)
    public = Named(label="openai://?model=gpt-4o-mini")
    chain = ChainChat([private, public], FAST)
    with pytest.raises(UpstreamUnavailable):
        await drain(chain, request(("hr",)))
    assert public.requests == []
    # Public documents may fail over to it.
    assert await drain(chain, request(("public", "hr"))) == "The answer is here [1]."
    assert len(public.requests) == 1
    with pytest.raises(UpstreamUnavailable, match="restricted documents"):
        await drain(ChainChat([public], FAST), request(("hr",)))
    allowed = ChainChat([public], ChainPolicy(restricted_to_public=True, probe_interval_s=0))
    assert await drain(allowed, request(("hr",)))


async def test_caller_errors_are_not_failed_over() -> None:
    class Bad(Named):
        async def stream(self, req: ChatRequest):  # type: ignore[override]
            self.requests.append(req)
            raise InvalidRequest("context too long")
            yield Delta()

    b = Named(label="b")
    with pytest.raises(InvalidRequest):
        await drain(ChainChat([Bad(label="a"), b], FAST))
    assert b.requests == []


async def test_first_token_timeout_fails_over() -> None:
    slow, b = Named(label="a", delay_s=1.0), Named(label="b")
    chain = ChainChat([slow, b], ChainPolicy(retries=0, first_token_timeout_s=0.05, probe_interval_s=0))
    with trace() as t:
        await drain(chain)
    assert t.backend == "b"


@dataclass
class WithJson(Named):
    @property
    def features(self) -> frozenset[str]:
        return frozenset({"response_format"})


async def test_a_request_needing_a_feature_skips_the_backends_without_it() -> None:
    plain, json_capable = Named(label="plain", words=("prose",)), WithJson(label="json", words=("{}",))
    chain = ChainChat([plain, json_capable], FAST)
    assert chain.features == frozenset({"response_format"})
    base = request()
    wants_json = ChatRequest(messages=base.messages, sources=base.sources, question="q",
                             params=GenParams(response_format={"type": "json_object"}))  # fmt: skip
    with trace() as t:
        assert await drain(chain, wants_json) == "{}"
    assert t.backend == "json" and plain.requests == []
    assert await drain(chain) == "prose"


async def test_a_feature_no_backend_of_the_chain_has_is_a_400_naming_it() -> None:
    chain = ChainChat([Named(label="a"), WithJson(label="b")], FAST)
    base = request()
    wants_tools = ChatRequest(messages=base.messages, sources=base.sources, question="q",
                              params=GenParams(tools=({"type": "function", "function": {"name": "f"}},),
                                               tool_choice="required"))  # fmt: skip
    with pytest.raises(InvalidRequest) as caught:
        await drain(chain, wants_tools)
    assert caught.value.param == "tools" and caught.value.code == "unsupported_parameter"

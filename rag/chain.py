"""A chat backend made of an ordered list of backends: retries, failover, circuit breakers, probes.

:class:`ChainChat` satisfies the :class:`~rag.seams.ChatBackend` protocol, so the pipeline uses it
like any single backend. A request goes to the first backend whose breaker is closed and that the
request's documents may be sent to; an error (or silence) *before the first token* is retried
with backoff and then fails over to the next backend. Once a token has been yielded the answer
belongs to that backend: a later failure is the caller's to report.

A request needing an optional feature (``response_format``, ``tools``, ``logprobs``) goes only to
the backends that honour it; the chain advertises the union of its backends' features.

Policy: answers drawn from non-public documents never go to a public endpoint (``openai://``,
the OpenAI API) unless ``chain.restricted_to_public`` allows it.

Which backend served a request is written into a :class:`Trace` the caller installs with
:func:`trace` (a context variable: concurrent requests each see their own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.chat import features_of
from rag.errors import ConfigError, InvalidRequest, RagError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from rag.seams import ChatBackend
from rag.types import PUBLIC_GROUP, ChatRequest, Delta

if TYPE_CHECKING:
    from rag.config import Settings

log = logging.getLogger(__name__)

# Endpoints outside the organisation: the OpenAI API itself.
PUBLIC_SCHEMES = ("openai://",)


@dataclass
class Trace:
    """What the chain did for one request: the backend that answered and every failed attempt."""

    backend: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)


_TRACE: ContextVar[Trace | None] = ContextVar("rag_chain_trace", default=None)


@contextlib.contextmanager
def trace() -> Iterator[Trace]:
    """Record, for the code inside the block, which backend answered."""
    t = Trace()
    token = _TRACE.set(t)
    try:
        yield t
    finally:
        _TRACE.reset(token)


@dataclass(frozen=True)
class ChainPolicy:
    """Retry, breaker and routing settings of a chain."""

    retries: int = 1
    backoff_s: float = 0.2
    first_token_timeout_s: float = 60.0
    breaker_failures: int = 3
    breaker_reset_s: float = 30.0
    probe_interval_s: float = 15.0
    restricted_to_public: bool = False
    public_url_prefixes: tuple[str, ...] = PUBLIC_SCHEMES
    concurrency: int = 32


class Breaker:
    """Per-backend circuit breaker: opens after N consecutive failures, half-opens after a pause."""

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        """True while the backend should be skipped (half-open after ``reset_s`` lets one try through)."""
        return self.opened_at is not None and self.clock() - self.opened_at < self.reset_s

    def success(self) -> None:
        """Close the breaker."""
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        """Count a failure; open (or re-open) the breaker at the threshold."""
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()


def is_public(backend: ChatBackend, prefixes: tuple[str, ...] = PUBLIC_SCHEMES) -> bool:
    """Whether a backend sends prompts outside the organisation."""
    return backend.name.startswith(prefixes)


def is_restricted(request: ChatRequest) -> bool:
    """Whether any source of the request is not readable by everyone."""
    return any(PUBLIC_GROUP not in s.chunk.groups for s in request.sources)


# Failures that another backend (or a retry) may fix; anything else (a 400 from the model
# server, say) would fail the same way everywhere and is raised at once.
_RETRYABLE = (UpstreamUnavailable, UpstreamTimeout, UpstreamError)

Listener = Callable[[str, str], None]


class ChainChat:
    """Tries ``backends`` in order; see the module docstring."""

    def __init__(
        self,
        backends: Sequence[ChatBackend],
        policy: ChainPolicy | None = None,
        *,
        on_failover: Listener | None = None,
        on_attempt: Callable[[str, str, float], None] | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a chain needs at least one backend")
        self.backends = list(backends)
        self.policy = policy or ChainPolicy()
        self.breakers = {b.name: Breaker(self.policy.breaker_failures, self.policy.breaker_reset_s) for b in backends}
        self._slots = {b.name: asyncio.Semaphore(self.policy.concurrency) for b in backends}
        self._on_failover = on_failover
        self._on_attempt = on_attempt
        self._prober: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The first backend's name, or ``chain(a,b,...)`` when there are several."""
        if len(self.backends) == 1:
            return self.backends[0].name
        return "chain(" + ",".join(b.name for b in self.backends) + ")"

    @property
    def features(self) -> frozenset[str]:
        """Every optional feature at least one backend honours."""
        return frozenset().union(*(features_of(b) for b in self.backends))

    def candidates(self, request: ChatRequest) -> list[ChatBackend]:
        """Backends this request may go to, in order (open breakers last, as a last resort)."""
        allowed = self.backends
        needed = request.params.features()
        if needed:
            allowed = [b for b in allowed if set(needed) <= features_of(b)]
            if not allowed:
                raise InvalidRequest(
                    f"no chat backend of the chain honours {', '.join(needed)}",
                    param=needed[0],
                    code="unsupported_parameter",
                )
        if is_restricted(request) and not self.policy.restricted_to_public:
            allowed = [b for b in allowed if not is_public(b, self.policy.public_url_prefixes)]
            if not allowed:
                raise UpstreamUnavailable(
                    "the answer draws on restricted documents and every configured chat backend is a public "
                    "endpoint; set chain.restricted_to_public or add a private backend"
                )
        closed = [b for b in allowed if not self.breakers[b.name].is_open]
        return closed + [b for b in allowed if b not in closed]

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream from the first backend that produces output; fail over only before the first token."""
        self._ensure_prober()
        record = _TRACE.get() or Trace()
        candidates = self.candidates(request)
        last: RagError | None = None
        previous: str | None = None
        for backend in candidates:
            for attempt in range(self.policy.retries + 1):
                if attempt:
                    await asyncio.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
                if previous is not None and previous != backend.name and self._on_failover:
                    self._on_failover(previous, backend.name)
                previous = backend.name
                async with self._slots[backend.name]:
                    started = time.perf_counter()
                    upstream: Any = backend.stream(request)  # an async generator: it has aclose()
                    try:
                        first = await asyncio.wait_for(anext(upstream), self.policy.first_token_timeout_s)
                    except StopAsyncIteration:
                        await upstream.aclose()
                        self._succeeded(backend, record, started)
                        return
                    except _RETRYABLE as e:
                        await upstream.aclose()
                        last = self._failed(backend, record, started, e.message)
                        continue
                    except TimeoutError:
                        await upstream.aclose()
                        wait = self.policy.first_token_timeout_s
                        last = self._failed(backend, record, started, f"no output within {wait:g} s")
                        continue
                    except BaseException:
                        await upstream.aclose()
                        raise
                    self._succeeded(backend, record, started)
                    try:
                        yield first
                        async for delta in upstream:
                            yield delta
                    finally:
                        await upstream.aclose()
                    return
                # A breaker that opened during the retries ends them.
                if self.breakers[backend.name].is_open:
                    break
        tried = ", ".join(f"{n}: {m}" for n, m in record.failures) or "none available"
        if last is None:
            raise UpstreamUnavailable("no chat backend is available")
        raise type(last)(f"every chat backend failed ({tried})") from last

    def _succeeded(self, backend: ChatBackend, record: Trace, started: float) -> None:
        self.breakers[backend.name].success()
        record.backend = backend.name
        if self._on_attempt:
            self._on_attempt(backend.name, "ok", time.perf_counter() - started)

    def _failed(self, backend: ChatBackend, record: Trace, started: float, message: str) -> RagError:
        self.breakers[backend.name].failure()
        log.warning("chat backend %s failed before its first token: %s", backend.name, message)
        record.failures.append((backend.name, message))
        if self._on_attempt:
            self._on_attempt(backend.name, "error", time.perf_counter() - started)
        return UpstreamUnavailable(f"{backend.name}: {message}")

    def _ensure_prober(self) -> None:
        if self._prober is None and self.policy.probe_interval_s > 0 and len(self.backends) > 1:
            self._prober = asyncio.get_running_loop().create_task(self._probe_forever())

    async def probe(self) -> dict[str, bool]:
        """Check every backend once; a healthy one closes its breaker, an unhealthy one opens it."""
        results: dict[str, bool] = {}
        for backend in self.backends:
            try:
                ok = await asyncio.wait_for(backend.health(), timeout=max(1.0, self.policy.probe_interval_s))
            except (RagError, TimeoutError):
                ok = False
            breaker = self.breakers[backend.name]
            if ok and breaker.opened_at is not None:
                log.info("chat backend %s is healthy again", backend.name)
                breaker.success()
            elif not ok:
                breaker.failures = max(breaker.failures, breaker.threshold - 1)
                breaker.failure()
            results[backend.name] = ok
        return results

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.policy.probe_interval_s)
            try:
                await self.probe()
            except Exception:  # pragma: no cover - a probe must never kill the loop
                log.exception("chat backend probe failed")

    async def health(self) -> bool:
        """True when at least one backend answers its health check."""
        self._ensure_prober()
        for backend in self.backends:
            with contextlib.suppress(RagError):
                if await backend.health():
                    return True
        return False

    async def close(self) -> None:
        """Stop probing and close every backend."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None
        for backend in self.backends:
            await backend.close()


def policy_of(settings: Settings) -> ChainPolicy:
    """The chain policy from the ``chain`` and ``limits`` settings."""
    chain, limits = settings.chain, settings.limits
    return ChainPolicy(
        retries=chain.retries,
        backoff_s=chain.backoff_s,
        first_token_timeout_s=chain.first_token_timeout_s,
        breaker_failures=chain.breaker_failures,
        breaker_reset_s=chain.breaker_reset_s,
        probe_interval_s=chain.probe_interval_s,
        restricted_to_public=chain.restricted_to_public,
        public_url_prefixes=tuple(chain.public_url_prefixes),
        concurrency=limits.backend_concurrency,
    )


def build_chain(
    settings: Settings,
    primary: ChatBackend,
    *,
    on_failover: Listener | None = None,
    on_attempt: Callable[[str, str, float], None] | None = None,
) -> ChainChat:
    """``primary`` (the resolved ``chat.url``) followed by ``chain.fallback_urls``."""
    from rag.registry import make_chat

    backends = [primary, *(make_chat(settings, url) for url in settings.chain.fallback_urls)]
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ConfigError(f"chat backends repeat in the chain: {', '.join(names)}")
    return ChainChat(backends, policy_of(settings), on_failover=on_failover, on_attempt=on_attempt)

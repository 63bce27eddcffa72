"""The run: every case against every target, retrieval shared per case, results appended as they finish.

A run lives in a folder (``runs/<name>/``): ``config.json`` says what was run (targets, data set hash,
settings without secrets, judge prompt version) and ``items.jsonl`` holds one line per finished
(case, target) item. A restarted run skips the items already in the file, so an interrupted run resumes
where it stopped; each line is written with one ``write`` and fsynced, and a torn last line (the process
was killed mid-write) is cut off on restart.

Two modes. ``generate``: targets are chat backend URLs; retrieval runs once per case and every target
answers from the same sources, so differences come from the generator. ``retrieval``: targets are
retrieval settings (``k=10``, ``k=3,min_score=0.3``); the query is embedded once per case and each
setting searches with it; only retrieval metrics are scored, at the configured cutoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval.dataset import Case, CaseRecord
from eval.judge import PROMPT_VERSION, Judge
from eval.prices import PriceTable
from eval.scoring import answer_scores, retrieval_scores, similarity
from eval.service import ServiceAnswer, ServiceTarget, is_service_target
from rag.config import RetrievalSettings
from rag.errors import InvalidRequest, RagError
from rag.pipeline import Answer, Pipeline, Prepared
from rag.registry import make_chat
from rag.retrieval import Retriever
from rag.seams import ChatBackend
from rag.types import GenParams, Message, ScoredChunk

log = logging.getLogger(__name__)

Mode = Literal["generate", "retrieval"]
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# Upstream errors that another attempt cannot fix.
PERMANENT_CODES = frozenset({"model_not_found", "invalid_api_key"})
CONFIG_FILE, ITEMS_FILE = "config.json", "items.jsonl"


class DatasetInfo(BaseModel):
    """Which cases a run used."""

    label: str
    sha256: str
    cases: int


class RunConfig(BaseModel):
    """``config.json``: what a run evaluates; a resumed run must match it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    mode: Mode = "generate"
    targets: list[str]
    dataset: DatasetInfo
    k: int
    seed: int = 0
    concurrency: int = 4
    retries: int = 2
    judge: str | None = None
    judge_prompt_version: str = PROMPT_VERSION
    prices: PriceTable = Field(default_factory=PriceTable)
    settings: dict[str, Any] = Field(default_factory=dict)
    created: float = 0.0

    def identity(self) -> dict[str, Any]:
        """The fields that must be equal for results to be mixed in one run."""
        return {
            "mode": self.mode,
            "targets": self.targets,
            "dataset": self.dataset.sha256,
            "k": self.k,
            "judge": self.judge,
            "judge_prompt_version": self.judge_prompt_version if self.judge else None,
        }


class ItemRecord(BaseModel):
    """One line of ``items.jsonl``: a case answered by a target, with its scores."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    target: str
    tags: list[str] = Field(default_factory=list)
    lang: str = ""
    answer: str = ""
    cited: list[str] = Field(default_factory=list)
    retrieved: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    retrieval_ms: float = 0.0
    ttft_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    # The harness's own time for the item: scoring (metrics, answer embedding), not retrieval or generation.
    score_ms: float = 0.0
    attempts: int = 0
    error: str | None = None
    judge_error: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """How to run: targets (chat URLs, or retrieval settings in ``retrieval`` mode) and the knobs."""

    targets: tuple[str, ...]
    mode: Mode = "generate"
    concurrency: int = 4
    retries: int = 2
    backoff_s: float = 0.5
    seed: int = 0
    prices: PriceTable = field(default_factory=PriceTable)


@dataclass(frozen=True)
class RunOutcome:
    """What one invocation did: items run now, skipped as already done, and failed."""

    folder: Path
    ran: int
    skipped: int
    failed: int
    seconds: float


def dataset_hash(cases: Sequence[Case]) -> str:
    """SHA-256 of the cases as records, in order."""
    digest = hashlib.sha256()
    for case in cases:
        digest.update(CaseRecord.from_case(case).model_dump_json().encode())
        digest.update(b"\n")
    return digest.hexdigest()


def safe_settings(settings: Any) -> dict[str, Any]:
    """Settings as JSON with every secret field left out."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for section in data.values():
        if isinstance(section, dict):
            for key in [k for k in section if k.endswith(("api_key", "token", "password", "secret"))]:
                del section[key]
    return data


def _numeric_retrieval_settings() -> set[str]:
    return {name for name, f in RetrievalSettings.model_fields.items() if f.annotation in (int, float)}


def parse_variant(text: str) -> dict[str, float]:
    """A retrieval setting target: ``k=10`` or ``k=3,min_score=0.3,rrf_k=20`` (any numeric retrieval setting)."""
    allowed = _numeric_retrieval_settings()
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in allowed:
            raise InvalidRequest(
                f"retrieval setting {text!r}: expected NAME=VALUE pairs, comma-separated, NAME one of "
                + ", ".join(sorted(allowed))
            )
        try:
            out[key.strip()] = float(value)
        except ValueError as e:
            raise InvalidRequest(f"retrieval setting {text!r}: {value!r} is not a number") from e
    if not out:
        raise InvalidRequest("empty retrieval setting")
    if "k" in out and (out["k"] < 1 or out["k"] != int(out["k"])):
        raise InvalidRequest(f"retrieval setting {text!r}: k must be a positive integer")
    return out


class ItemLog:
    """``items.jsonl``, append-only: each record one atomic, fsynced line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def read(self) -> list[ItemRecord]:
        """Every finished item; a torn last line (killed mid-write) is cut off the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[ItemRecord] = []
        good = 0
        for n, line in enumerate(data.split(b"\n"), 1):
            end = good + len(line) + 1
            if not line.strip():
                good = min(end, len(data))
                continue
            try:
                records.append(ItemRecord.model_validate_json(line))
            except ValidationError as e:
                if end > len(data):  # the last line, without its newline: a write cut short
                    log.warning("dropping a torn last line of %s", self.path)
                    with self.path.open("r+b") as f:
                        f.truncate(good)
                    break
                raise InvalidRequest(f"{self.path}:{n}: not an item record: {e.errors()[0]['msg']}") from e
            good = end
        return records

    async def append(self, record: ItemRecord) -> None:
        """Write one record as one line, flushed to disk before returning."""
        line = (record.model_dump_json() + "\n").encode()
        async with self._lock:
            await asyncio.to_thread(self._write, line)

    def _write(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def prepare_folder(folder: Path, config: RunConfig) -> RunConfig:
    """Create the run folder with its config, or check that an existing one describes the same run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    if path.exists():
        try:
            existing = RunConfig.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as e:
            raise InvalidRequest(f"{path}: not a run configuration: {e}") from e
        mine, theirs = config.identity(), existing.identity()
        if mine != theirs:
            differ = ", ".join(k for k in mine if mine[k] != theirs[k])
            raise InvalidRequest(f"{folder} holds a different run ({differ} differ); choose another --out")
        return existing
    tmp = path.with_suffix(".tmp")
    tmp.write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return config


def load_config(folder: Path) -> RunConfig:
    """The configuration of an existing run."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise InvalidRequest(f"{folder} is not a run folder (no {CONFIG_FILE})")
    return RunConfig.model_validate_json(path.read_text(encoding="utf-8"))


class _GenerationFailed(Exception):
    """Generation failed for good after ``attempts`` tries."""

    def __init__(self, error: RagError, attempts: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts


def _error_text(e: BaseException) -> str:
    if isinstance(e, RagError):
        return f"{e.status} {e.code or e.type}: {e.message}"
    return f"{type(e).__name__}: {e}"


class Runner:
    """Runs cases × targets over one pipeline; results go to ``folder/items.jsonl``."""

    def __init__(
        self,
        pipeline: Pipeline,
        cases: Sequence[Case],
        options: RunOptions,
        folder: Path,
        judge: Judge | None = None,
        on_item: Callable[[ItemRecord], None] | None = None,
    ) -> None:
        if not options.targets:
            raise InvalidRequest("give at least one target")
        if len(set(options.targets)) != len(options.targets):
            raise InvalidRequest("a target is given twice")
        if options.concurrency < 1:
            raise InvalidRequest("concurrency must be at least 1")
        self.pipeline = pipeline
        self.cases = list(cases)
        self.options = options
        self.folder = folder
        self.judge = judge
        self.on_item = on_item
        self.log = ItemLog(folder / ITEMS_FILE)
        self.k = pipeline.settings.retrieval.k
        self._variants = {t: parse_variant(t) for t in options.targets} if options.mode == "retrieval" else {}
        self._retrievers: dict[str, Retriever] = {}
        self._backends: dict[str, ChatBackend] = {}
        self._services: dict[str, ServiceTarget] = {}
        self._shared: dict[str, asyncio.Task[Any]] = {}
        self._pending_per_case: dict[str, int] = {}
        self._retrieve_slots = asyncio.Semaphore(options.concurrency)
        self._generate_slots = asyncio.Semaphore(options.concurrency)
        self._rng = random.Random(options.seed)

    def pending(self) -> tuple[list[tuple[Case, str]], int]:
        """(case, target) pairs still to run, in the seeded order, and how many are already done."""
        done = {(r.case_id, r.target) for r in self.log.read()}
        order = list(self.cases)
        random.Random(self.options.seed).shuffle(order)
        todo = [(c, t) for c in order for t in self.options.targets if (c.id, t) not in done]
        return todo, len(self.cases) * len(self.options.targets) - len(todo)

    async def run(self) -> RunOutcome:
        """Run every pending item; items that fail are recorded with their error, not retried next time."""
        started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        todo, skipped = self.pending()
        for case, _ in todo:
            self._pending_per_case[case.id] = self._pending_per_case.get(case.id, 0) + 1
        if self.options.mode == "generate":
            for target in {t for _, t in todo}:
                if is_service_target(target):
                    timeout = self.pipeline.settings.chat.timeout_s
                    self._services[target] = ServiceTarget(target, timeout_s=timeout)
                else:
                    self._backends[target] = make_chat(self.pipeline.settings, target)
        failed = 0
        try:
            # A service retrieves by itself: the local store is opened only for local targets.
            if todo and (self.options.mode == "retrieval" or self._backends):
                await self.pipeline.ensure_open()
            if self.options.concurrency == 1:
                # One item after another: nothing overlaps, so the measured times add up to the wall time.
                records = [await self._item(case, target) for case, target in todo]
            else:
                records = await asyncio.gather(*(self._item(case, target) for case, target in todo))
            failed = sum(1 for r in records if r.error)
        finally:
            for backend in self._backends.values():
                await backend.close()
            for service in self._services.values():
                await service.close()
        return RunOutcome(self.folder, len(todo), skipped, failed, time.monotonic() - started)

    async def _item(self, case: Case, target: str) -> ItemRecord:
        try:
            if self.options.mode == "retrieval":
                record = await self._retrieval_item(case, target)
            else:
                record = await self._generate_item(case, target)
        except RagError as e:
            record = ItemRecord(case_id=case.id, target=target, error=_error_text(e))
        except Exception as e:  # one odd item must not end a long run; it is recorded with its error
            log.exception("item %s on %s failed", case.id, target)
            record = ItemRecord(case_id=case.id, target=target, error=_error_text(e))
        finally:
            self._pending_per_case[case.id] -= 1
            if self._pending_per_case[case.id] == 0:
                self._shared.pop(case.id, None)
        record = record.model_copy(update={"tags": list(case.tags), "lang": case.lang})
        await self.log.append(record)
        if self.on_item is not None:
            self.on_item(record)
        return record

    def _shared_task(self, case: Case, make: Callable[[], Any]) -> asyncio.Task[Any]:
        task = self._shared.get(case.id)
        if task is None:
            task = self._shared[case.id] = asyncio.ensure_future(make())
        return task

    async def _prepare(self, case: Case) -> Prepared:
        async with self._retrieve_slots:
            params = GenParams(seed=self.options.seed)
            return await self.pipeline.prepare([Message("user", case.question)], None, params)

    async def _generate_item(self, case: Case, target: str) -> ItemRecord:
        if target in self._services:
            return await self._service_item(case, self._services[target])
        prepared: Prepared = await self._shared_task(case, lambda: self._prepare(case))
        retrieved = [h.chunk.source for h in prepared.retrieved]
        base = ItemRecord(
            case_id=case.id,
            target=target,
            retrieved=retrieved,
            retrieval_ms=prepared.retrieval_ms,
            metrics=retrieval_scores(case, retrieved, self.k),
        )
        async with self._generate_slots:
            try:
                answer, attempts = await self._generate(prepared, self._backends[target])
            except _GenerationFailed as failed:
                return base.model_copy(update={"error": _error_text(failed.error), "attempts": failed.attempts})
        cited = list(dict.fromkeys(c.hit.chunk.source for c in answer.citations))
        scoring_started = time.perf_counter()
        metrics = await self._answer_metrics(case, answer.text, cited, base.metrics)
        score_ms = (time.perf_counter() - scoring_started) * 1000
        judge_error = None
        if self.judge is not None:
            judge_error = await self._judge(case, answer, prepared.retrieved, metrics)
        return base.model_copy(
            update={
                "answer": answer.text,
                "cited": cited,
                "metrics": metrics,
                # The pipeline reports 0 for an answer with no text; there was no first token to time.
                "ttft_ms": answer.timings_ms.get("first_token") if answer.text else None,
                "total_ms": answer.timings_ms.get("generation"),
                "prompt_tokens": answer.usage.prompt_tokens,
                "completion_tokens": answer.usage.completion_tokens,
                "cost": self.options.prices.cost(target, answer.usage),
                "score_ms": score_ms,
                "attempts": attempts,
                "judge_error": judge_error,
            }
        )

    async def _answer_metrics(
        self, case: Case, text: str, cited: Sequence[str], base: dict[str, float]
    ) -> dict[str, float]:
        metrics = {**base, **answer_scores(case, text, cited)}
        if case.answers and not case.unanswerable:
            metrics["similarity"] = await similarity(self.pipeline.embedder, text, case.answers)
        return metrics

    async def _service_item(self, case: Case, service: ServiceTarget) -> ItemRecord:
        """One question put to a running service: it retrieves and answers; we score what it returned."""
        async with self._generate_slots:
            try:
                answer, attempts = await self._ask_service(case, service)
            except _GenerationFailed as failed:
                return ItemRecord(
                    case_id=case.id, target=service.name, error=_error_text(failed.error), attempts=failed.attempts
                )
        scoring_started = time.perf_counter()
        metrics = await self._answer_metrics(
            case, answer.text, answer.cited, retrieval_scores(case, answer.retrieved, self.k)
        )
        score_ms = (time.perf_counter() - scoring_started) * 1000
        judge_error = None
        if self.judge is not None:
            # The passages are what the service's /v1/search returned for the question.
            judge_error = await self._judge_text(case, answer.text, answer.passages, metrics)
        return ItemRecord(
            case_id=case.id,
            target=service.name,
            answer=answer.text,
            cited=answer.cited,
            retrieved=answer.retrieved,
            metrics=metrics,
            retrieval_ms=answer.retrieval_ms,
            ttft_ms=answer.ttft_ms if answer.text else None,
            total_ms=answer.total_ms,
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            cost=self.options.prices.cost(service.name, answer.usage),
            score_ms=score_ms,
            attempts=attempts,
            judge_error=judge_error,
        )

    async def _ask_service(self, case: Case, service: ServiceTarget) -> tuple[ServiceAnswer, int]:
        for attempt in range(self.options.retries + 1):
            try:
                return await service.ask(case.question, seed=self.options.seed), attempt + 1
            except RagError as e:
                permanent = e.status not in RETRYABLE_STATUS or e.code in PERMANENT_CODES
                if permanent or attempt == self.options.retries:
                    raise _GenerationFailed(e, attempt + 1) from e
                delay = self.options.backoff_s * 2**attempt * (1 + self._rng.random() / 2)
                log.info("%s failed (%s); retry %d in %.1fs", service.name, e.message, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _generate(self, prepared: Prepared, backend: ChatBackend) -> tuple[Answer, int]:
        for attempt in range(self.options.retries + 1):
            try:
                async for event in self.pipeline.stream(prepared, chat=backend):
                    if isinstance(event, Answer):
                        return event, attempt + 1
                raise AssertionError("stream ended without an Answer")  # pragma: no cover
            except RagError as e:
                permanent = e.status not in RETRYABLE_STATUS or e.code in PERMANENT_CODES
                if permanent or attempt == self.options.retries:
                    raise _GenerationFailed(e, attempt + 1) from e
                delay = self.options.backoff_s * 2**attempt * (1 + self._rng.random() / 2)
                log.info("%s failed (%s); retry %d in %.1fs", backend.name, e.message, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _judge(
        self, case: Case, answer: Answer, sources: Sequence[ScoredChunk], metrics: dict[str, float]
    ) -> str | None:
        return await self._judge_text(case, answer.text, [h.chunk.text for h in sources], metrics)

    async def _judge_text(
        self, case: Case, text: str, passages: Sequence[str], metrics: dict[str, float]
    ) -> str | None:
        assert self.judge is not None
        try:
            verdict = await self.judge.grade(case.question, text, list(passages))
        except RagError as e:
            return _error_text(e)
        if verdict.faithfulness is not None:
            metrics["faithfulness"] = verdict.faithfulness
        if verdict.relevance is not None:
            metrics["relevance"] = verdict.relevance
        if verdict.faithfulness is None or verdict.relevance is None:
            return f"unparsed judge reply: {verdict.raw[:200]!r}"
        return None

    def _retriever(self, target: str) -> Retriever:
        """The pipeline's own hybrid retriever with this target's settings (validated like the config)."""
        if target not in self._retrievers:
            base = self.pipeline.settings.retrieval.model_dump()
            try:
                settings = RetrievalSettings.model_validate({**base, **self._variants[target]})
            except ValidationError as e:
                raise InvalidRequest(f"retrieval setting {target!r}: {e.errors()[0]['msg']}") from e
            p = self.pipeline
            self._retrievers[target] = Retriever(p.store, p.embedder, settings, p.reranker)
        return self._retrievers[target]

    async def _retrieval_item(self, case: Case, target: str) -> ItemRecord:
        retriever = self._retriever(target)
        async with self._retrieve_slots:
            start = time.perf_counter()
            hits = await retriever.search(case.question, retriever.settings.k, None)
            search_ms = (time.perf_counter() - start) * 1000  # query embedding included
        retrieved = [h.chunk.source for h in hits]
        return ItemRecord(
            case_id=case.id,
            target=target,
            retrieved=retrieved,
            retrieval_ms=search_ms,
            metrics=retrieval_scores(case, retrieved, self.k),
            total_ms=search_ms,
            cost=0.0,
        )

"""The runner: shared retrieval, retries, errors recorded per item, the resumable item log, retrieval mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.corpus import ingest_corpus
from eval.dataset import from_squad
from eval.prices import Price, PriceTable, load_prices
from eval.runner import (
    DatasetInfo,
    ItemLog,
    ItemRecord,
    RunConfig,
    Runner,
    RunOptions,
    dataset_hash,
    parse_variant,
    prepare_folder,
    safe_settings,
)
from rag.config import load
from rag.errors import InvalidRequest
from rag.pipeline import Pipeline
from rag.registry import make_chat, make_embedder, make_store
from rag.types import Usage
from tests.eval.conftest import XQUAD, fake_target
from tests.fakes import FakeOpenAIServer


async def _pipeline() -> Pipeline:
    settings = load()
    store, embedder = make_store(settings), make_embedder(settings)
    await ingest_corpus(settings, store, embedder, from_squad(XQUAD).corpus)
    return Pipeline(settings, store, embedder, make_chat(settings, "extractive://"))


async def _run(folder: Path, options: RunOptions, pipeline: Pipeline | None = None) -> list[ItemRecord]:
    pipeline = pipeline or await _pipeline()
    cases = from_squad(XQUAD).cases
    try:
        await Runner(pipeline, cases, options, folder).run()
    finally:
        await pipeline.close()
    return ItemLog(folder / "items.jsonl").read()


async def test_retrieval_runs_once_per_case_and_is_shared_by_every_target(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    pipeline = await _pipeline()
    calls: list[str] = []
    original = pipeline.prepare

    async def counting(messages, flt=None, params=None):  # type: ignore[no-untyped-def]
        calls.append(messages[-1].content)
        return await original(messages, flt, params)

    pipeline.prepare = counting  # type: ignore[method-assign]
    targets = ("extractive://", fake_target(fake_openai.base_url))
    records = await _run(tmp_path, RunOptions(targets=targets, concurrency=3), pipeline)
    assert len(calls) == 7 == len(set(calls))
    assert len(records) == 14
    by_case: dict[str, set[tuple[str, ...]]] = {}
    for r in records:
        assert r.error is None
        by_case.setdefault(r.case_id, set()).add(tuple(r.retrieved))
    assert all(len(v) == 1 for v in by_case.values())
    fake = [r for r in records if r.target == targets[1]]
    assert all(r.answer.startswith("Echo:") for r in fake)
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in fake)
    assert all(r.cost is None for r in fake)  # no price known: no cost, not a zero one
    assert all(r.cost == 0.0 for r in records if r.target == "extractive://")


async def test_every_item_has_the_metrics_that_apply_to_it(eval_env: dict[str, str], tmp_path: Path) -> None:
    records = await _run(tmp_path, RunOptions(targets=("extractive://",)))
    expected = {"hit@2", "recall@2", "mrr@2", "ndcg@2", "em", "f1", "rouge_l", "similarity"}
    expected |= {"citation_precision", "citation_recall", "refusal"}
    for r in records:
        assert set(r.metrics) == expected
        assert all(0.0 <= v <= 1.0 for v in r.metrics.values())
        assert r.ttft_ms is not None and r.total_ms is not None and r.total_ms >= r.ttft_ms
        assert set(r.cited) <= set(r.retrieved)


async def test_transient_upstream_errors_are_retried(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_openai.fail_next(2, status=503)
    target = fake_target(fake_openai.base_url) + "&retries=0"  # no SDK retries: the runner's are tested
    options = RunOptions(targets=(target,), concurrency=1, retries=2, backoff_s=0.01)
    records = await _run(tmp_path, options)
    assert all(r.error is None for r in records)
    assert sorted(r.attempts for r in records) == [1, 1, 1, 1, 1, 1, 3]


async def test_a_failing_target_is_recorded_per_item_and_the_run_goes_on(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    bad = f"openai+{fake_openai.base_url}?model=no-such-model"
    records = await _run(tmp_path, RunOptions(targets=("extractive://", bad), retries=1, backoff_s=0.01))
    failed = [r for r in records if r.target == bad]
    assert len(failed) == 7
    assert all(r.error and "model_not_found" in r.error for r in failed)
    assert all(r.attempts == 1 for r in failed)  # a missing model is not retried
    assert all(r.error is None for r in records if r.target == "extractive://")


async def test_a_finished_item_is_not_run_again(eval_env: dict[str, str], tmp_path: Path) -> None:
    first = await _run(tmp_path, RunOptions(targets=("extractive://",)))
    log = ItemLog(tmp_path / "items.jsonl")
    lines = (tmp_path / "items.jsonl").read_bytes().split(b"\n")
    (tmp_path / "items.jsonl").write_bytes(b"\n".join(lines[:3]) + b"\n")  # as if killed after 3 items
    again = await _run(tmp_path, RunOptions(targets=("extractive://",)))
    assert len(again) == 7 == len({r.case_id for r in again})
    assert again[:3] == first[:3]
    assert log.read() == again


def test_a_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    good = ItemRecord(case_id="a", target="t").model_dump_json() + "\n"
    path.write_text(good + '{"case_id": "b", "tar', encoding="utf-8")
    assert [r.case_id for r in ItemLog(path).read()] == ["a"]
    assert path.read_text(encoding="utf-8") == good
    path.write_text('{"broken"\n' + good, encoding="utf-8")
    with pytest.raises(InvalidRequest, match=r"items\.jsonl:1: not an item record"):
        ItemLog(path).read()


async def test_retrieval_mode_compares_retrieval_settings(eval_env: dict[str, str], tmp_path: Path) -> None:
    records = await _run(tmp_path, RunOptions(targets=("k=1", "k=3,min_score=0.0"), mode="retrieval"))
    assert len(records) == 14
    for r in records:
        assert set(r.metrics) == {"hit@2", "recall@2", "mrr@2", "ndcg@2"}
        assert len(r.retrieved) == (1 if r.target == "k=1" else 3)
        assert r.answer == ""
    with pytest.raises(InvalidRequest, match=r"NAME one of .*min_score.*rrf_k"):
        parse_variant("top=3")


async def test_retrieval_mode_uses_the_pipelines_hybrid_retriever(eval_env: dict[str, str], tmp_path: Path) -> None:
    # lexical_weight=0 leaves dense alone; the default fuses BM25 in: the two rankings must differ somewhere.
    records = await _run(
        tmp_path, RunOptions(targets=("k=3,min_score=0", "k=3,min_score=0,lexical_weight=0"), mode="retrieval")
    )
    by_target: dict[str, list[list[str]]] = {}
    for r in sorted(records, key=lambda r: r.case_id):
        by_target.setdefault(r.target, []).append(r.retrieved)
    assert by_target["k=3,min_score=0"] != by_target["k=3,min_score=0,lexical_weight=0"]


def test_a_run_folder_refuses_a_different_run(eval_env: dict[str, str], tmp_path: Path) -> None:
    cases = from_squad(XQUAD).cases
    info = DatasetInfo(label="x", sha256=dataset_hash(cases), cases=len(cases))
    config = RunConfig(name="r", targets=["extractive://"], dataset=info, k=2, settings=safe_settings(load()))
    prepare_folder(tmp_path, config)
    assert prepare_folder(tmp_path, config.model_copy(update={"concurrency": 9})).concurrency == 4
    with pytest.raises(InvalidRequest, match="targets differ"):
        prepare_folder(tmp_path, config.model_copy(update={"targets": ["ollama://"]}))
    assert dataset_hash(cases) != dataset_hash(cases[:-1])


def test_settings_are_recorded_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CHAT__API_KEY", "sk-very-secret")
    text = str(safe_settings(load()))
    assert "sk-very-secret" not in text and "api_key" not in text


def test_prices_are_looked_up_by_url_then_model_then_scheme(tmp_path: Path) -> None:
    table = PriceTable(
        prices={
            "openai://?model=gpt-4o-mini": Price(input_per_1m=0.15, output_per_1m=0.6),
            "llama3.2": Price(input_per_1m=0.0, output_per_1m=0.0),
            "kserve+http": Price(input_per_1m=1.0, output_per_1m=2.0),
        }
    )
    assert table.cost("openai://?model=gpt-4o-mini", Usage(1_000_000, 1_000_000)) == pytest.approx(0.75)
    assert table.cost("ollama://localhost:11434?model=llama3.2", Usage(10, 10)) == 0.0
    assert table.cost("kserve+http://isvc/openai/v1?model=ft", Usage(500_000, 0)) == pytest.approx(0.5)
    assert table.cost("openai+http://other/v1?model=x", Usage(1, 1)) is None
    assert table.cost("extractive://", Usage(9, 9)) == 0.0
    path = tmp_path / "prices.yaml"
    path.write_text("currency: EUR\nprices:\n  x: {input_per_1m: 1, output_per_1m: 2}\n", encoding="utf-8")
    assert load_prices(path).currency == "EUR"
    path.write_text("prices:\n  x: {input_per_1m: -1, output_per_1m: 2}\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="price table"):
        load_prices(path)

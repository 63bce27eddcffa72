"""Per-tag and per-language breakdowns, Korean long-form scoring, MLflow and TensorBoard logging, synth sampling."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval.corpus import sample_stored
from eval.dataset import Case
from eval.render import breakdown_rows, markdown
from eval.report import summarize, write_summary
from eval.runner import DatasetInfo, ItemLog, ItemRecord, RunConfig, prepare_folder
from eval.scoring import answer_scores
from eval.tracking import log_mlflow, log_summary, log_tensorboard, target_values
from rag.config import load
from rag.errors import MissingExtra
from rag.registry import make_embedder, make_store
from rag.types import Chunk
from tests.fakes import FakeOpenAIServer, openai_server

TARGETS = ["extractive://", "openai://?model=x"]


async def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    config = RunConfig(
        name="bd", targets=TARGETS, dataset=DatasetInfo(label="t", sha256="0" * 64, cases=6), k=5, seed=1
    )
    prepare_folder(folder, config)
    log = ItemLog(folder / "items.jsonl")
    for i in range(6):
        lang, tags = (
            ("ko", ["domain:law"]) if i < 3 else ("en", ["domain:hpc", "multihop"] if i == 5 else ["domain:hpc"])
        )
        for t, f1 in zip(TARGETS, (1.0, 1.0 if i % 2 else 0.0), strict=True):
            await log.append(
                ItemRecord(case_id=f"c{i}", target=t, tags=tags, lang=lang, metrics={"f1": f1, "hit@5": 1.0})
            )
    return folder


async def test_summary_breaks_every_metric_down_by_tag_and_language(tmp_path: Path) -> None:
    folder = await _folder(tmp_path)
    summary = summarize(folder)
    base, other = summary.target(TARGETS[0]), summary.target(TARGETS[1])
    assert set(base.by_lang) == {"ko", "en"} and set(base.by_tag) == {"domain:law", "domain:hpc", "multihop"}
    assert base.by_lang["ko"].items == 3 and base.by_tag["multihop"].items == 1
    assert other.by_lang["ko"].metrics["f1"].mean == pytest.approx(1 / 3)  # c1 of c0..c2
    assert other.by_tag["domain:hpc"].metrics["f1"].mean == pytest.approx(2 / 3)  # c3, c5 of c3..c5
    assert other.by_tag["domain:hpc"].metrics["f1"].n == 3
    write_summary(folder, summary)
    assert '"by_tag"' in (folder / "summary.json").read_text(encoding="utf-8")
    header, rows = breakdown_rows(summary)
    assert header[:2] == ["group", "metric"] and len(header) == 4
    assert rows[[r[:2] for r in rows].index(["lang:ko", "f1"])][:2] == ["lang:ko", "f1"]
    plots = {k: folder / f"{k}.png" for k in ("metrics", "latency", "cost")}
    assert "## By language and tag" in markdown(summary, plots)


def test_korean_long_form_answers_get_character_level_credit() -> None:
    reference = "시중은행은 최저자본금 1,000억원이 필요하며, 지방은행과 인터넷은행은 250억원이 필요합니다."
    answer = "시중은행의 최저자본금은 1,000억원이고 지방은행과 인터넷은행은 250억원입니다 [1]."
    case = Case(id="k", question="은행 인가 요건의 차이는?", answers=(reference,), sources=("d1",), lang="ko")
    scores = answer_scores(case, answer, ["d1"])
    assert scores["em"] == 0.0
    assert scores["f1"] > 0.7 and scores["rouge_l"] > 0.6  # KorQuAD characters, not whitespace words
    english = answer_scores(Case(**{**case.__dict__, "lang": "en"}), answer, ["d1"])
    assert english["f1"] < 0.5  # the same pair scored by words: particles make most tokens differ


def test_tensorboard_events_are_written_per_target(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = asyncio.run(_folder(tmp_path))
    summary = summarize(folder)
    dirs = log_tensorboard(tmp_path / "tb", summary)
    assert [d.name for d in dirs] == ["t1", "t2"]
    acc = EventAccumulator(str(dirs[1]))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"f1", "hit_at_5", "lang_ko/f1", "tag_domain_law/f1", "error_rate"} <= set(scalars)
    assert acc.Scalars("lang_ko/f1")[0].value == pytest.approx(1 / 3)


def test_mlflow_runs_in_a_local_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")

    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    folder = asyncio.run(_folder(tmp_path))
    summary = summarize(folder)
    uri = (tmp_path / "mlruns").as_uri()
    logged = log_summary(summary, folder, mlflow_uri=uri, experiment="unit")
    client = MlflowClient(tracking_uri=uri)
    runs = [client.get_run(i) for i in logged["mlflow"]]
    assert [r.data.params["target"] for r in runs] == TARGETS
    assert runs[1].data.metrics["tag_domain_hpc/f1"] == pytest.approx(2 / 3)
    assert runs[0].data.metrics == pytest.approx(target_values(summary.targets[0]))
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"summary.json", "config.json"} <= artifacts


def test_a_missing_tracking_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    summary = summarize(asyncio.run(_folder(tmp_path)))
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(MissingExtra, match=r"onprem-rag\[eval-tracking\]"):
        log_mlflow((tmp_path / "m").as_uri(), summary, tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(MissingExtra, match=r"onprem-rag\[eval-tracking\]"):
        log_tensorboard(tmp_path / "tb", summary)


async def test_synth_samples_distinct_readable_chunks_from_a_stored_collection(
    eval_env: dict[str, str], tmp_path: Path
) -> None:
    settings = load()
    store, embedder = make_store(settings), make_embedder(settings)
    await store.open(embedder.info, create=True)
    chunks = [
        Chunk(id=f"p{i}", text=f"public passage number {i} about topic {i % 7}", source=f"doc{i % 10}")
        for i in range(60)
    ]
    chunks.append(Chunk(id="secret", text="salary bands", source="hr", groups=("hr",)))
    await store.upsert(chunks, np.asarray(await embedder.embed_documents([c.text for c in chunks])))
    try:
        sample = await sample_stored(store, embedder.info.dim, 25, seed=3)
        again = await sample_stored(store, embedder.info.dim, 25, seed=3)
        everything = await sample_stored(store, embedder.info.dim, 1000, seed=3)
    finally:
        await store.close()
    assert len(sample) == 25 == len({c.id for c in sample})
    assert [c.id for c in sample] == [c.id for c in again]
    assert len({c.source for c in sample}) >= 5
    assert "secret" not in {c.id for c in everything}
    assert len(everything) > 40  # random directions reach most of the collection before giving up


async def test_synth_command_reads_passages_from_a_stored_collection(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eval.corpus import ingest_corpus
    from eval.dataset import from_squad, load_cases
    from tests.eval.conftest import XQUAD, fake_target
    from tests.eval.test_cli import invoke

    monkeypatch.setenv("RAG_STORE__URL", "memory://?name=synth-collection")
    settings = load()
    store, embedder = make_store(settings), make_embedder(settings)
    await ingest_corpus(settings, store, embedder, from_squad(XQUAD).corpus)

    def reply(messages: list[dict[str, Any]]) -> list[str]:
        if "Broncos" in str(messages[-1]["content"]):
            return ["Q: Who lost in the divisional round?\n", "A: Pittsburgh Steelers"]
        return ["I cannot write a question."]

    monkeypatch.setattr(openai_server, "canned_reply", reply)
    out = tmp_path / "synth.jsonl"
    code, _, err = await asyncio.to_thread(
        invoke, "synth", "--collection", "docs", "-g", fake_target(fake_openai.base_url), "--out", str(out)
    )
    assert code == 0, err
    assert [(c.answers, c.sources) for c in load_cases(out)] == [(("Pittsburgh Steelers",), ("Super_Bowl_50#0",))]
    assert "(from 3 passages)" in err

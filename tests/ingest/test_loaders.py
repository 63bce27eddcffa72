from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.acl import ACLError, groups_for
from ingest.loaders import FolderLoader
from ingest.source import make_loader
from rag.config import IngestSettings
from rag.errors import InvalidRequest
from tests.ingest.conftest import DOCS


async def _items(loader: FolderLoader) -> dict[str, object]:
    return {i.name: i async for i in loader.items()}


async def test_walk_reports_hidden_unsupported_and_outside_links_as_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.md").write_text("# A\n\ntext")
    (root / "sub" / "b.txt").write_text("b")
    (root / ".hidden" / "c.md").write_text("c")
    (root / ".secret.md").write_text("s")
    (root / "image.svg").write_bytes(b"<svg/>")
    outside = tmp_path / "outside.md"
    outside.write_text("outside")
    os.symlink(outside, root / "link.md")
    os.symlink(tmp_path, root / "linkdir")
    items = await _items(FolderLoader(str(root)))
    assert set(items) == {"a.md", "sub/b.txt", "image.svg", "link.md", "linkdir", ".hidden/", ".secret.md"}
    assert items[".hidden/"].skip == "hidden folder"  # type: ignore[attr-defined]
    assert items[".secret.md"].skip == "hidden file"  # type: ignore[attr-defined]
    assert "unsupported" in items["image.svg"].skip  # type: ignore[attr-defined]
    assert "outside the source root" in items["link.md"].skip  # type: ignore[attr-defined]
    assert "not followed" in items["linkdir"].skip  # type: ignore[attr-defined]
    assert items["a.md"].uri == (root / "a.md").as_uri()  # type: ignore[attr-defined]


async def test_include_and_exclude_globs(tmp_path: Path) -> None:
    for rel in ("a.md", "drafts/b.md", "c.txt", "sub/d.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    loader = FolderLoader(str(tmp_path), include=["*.md"], exclude=["drafts"])
    assert set(await _items(loader)) == {"a.md", "sub/d.md"}


async def test_oversized_file_is_refused_with_reason(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"a" * 2_000_000)
    items = await _items(FolderLoader(str(tmp_path), max_file_mb=1))
    assert "above the 1 MiB limit" in items["big.txt"].error  # type: ignore[attr-defined]


async def test_sample_corpus_acl_restricts_the_escalation_tree() -> None:
    items = await _items(FolderLoader(DOCS.as_uri(), default_groups=["public"]))
    assert items["restricted/incident-escalation.md"].groups == ("oncall",)  # type: ignore[attr-defined]
    assert items["oncall-runbook.md"].groups == ("public",)  # type: ignore[attr-defined]
    assert not any(name.endswith(".rag-acl.yaml") for name in items)


def test_nearest_acl_file_wins_and_bad_one_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".rag-acl.yaml").write_text("groups: [staff]\n")
    (tmp_path / "a" / "b" / ".rag-acl.yaml").write_text("groups: [x, y]\n")
    assert groups_for(tmp_path / "top.md", tmp_path, ["public"]) == ("staff",)
    assert groups_for(tmp_path / "a" / "f.md", tmp_path, ["public"]) == ("staff",)
    assert groups_for(tmp_path / "a" / "b" / "f.md", tmp_path, ["public"]) == ("x", "y")
    (tmp_path / "a" / "b" / ".rag-acl.yaml").write_text("groups: oops\n")
    with pytest.raises(ACLError):
        groups_for(tmp_path / "a" / "b" / "f.md", tmp_path, ["public"])


def test_unknown_source_scheme_and_missing_path_are_invalid_requests(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="unsupported source"):
        make_loader("ftp://host/x", IngestSettings())
    with pytest.raises(InvalidRequest, match="not found"):
        FolderLoader(str(tmp_path / "missing"))


async def test_fetch_many_reads_a_group_in_order_and_returns_the_error_of_a_file_gone_since_listing(tmp_path):
    for name in ("a.md", "b.md", "c.md"):
        (tmp_path / name).write_text(f"# {name}\n")
    loader = FolderLoader(str(tmp_path))
    items = [i async for i in loader.items()]
    (tmp_path / "b.md").unlink()
    got = await loader.fetch_many(items)
    assert got[0] == b"# a.md\n" and got[2] == b"# c.md\n"
    assert isinstance(got[1], FileNotFoundError)

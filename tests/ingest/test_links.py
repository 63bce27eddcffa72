"""Links and odd names in folder sources: reads never follow a link and read only the file listed,
links and hard links never carry a document across ACLs, every refusal is reported with its reason.

Real files, real links, the real ingest run; searches go through the service app (``/v1/search``)
in process, as an anonymous caller and as a caller holding the finance key.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ingest.files import ChangedError
from ingest.loaders import FolderLoader, Item, path_of
from ingest.worker import IngestReport, ingest_source
from rag.config import Settings
from rag.pipeline import Pipeline
from rag.registry import make_chat, make_embedder, make_store
from rag.seams import VectorStore
from rag.types import Chunk
from serving.app import create_app
from serving.identity import hash_key

RAG = Path(sys.executable).parent / "rag"
PAY = "Payroll ledger: the salary of every engineer is listed here. Marker paymarkzq."
KEYS = "Service credentials: OPENAI_API_KEY is keysmarkzq."
PUBLIC = "The cafeteria opens at eight and serves lunch until two."


def _tree(base: Path) -> Path:
    """root/pub (no ACL: public), root/secret (finance only), and a secrets file outside the root."""
    root = base / "root"
    (root / "pub").mkdir(parents=True)
    (root / "secret").mkdir()
    (root / "secret" / ".rag-acl.yaml").write_text("groups: [finance]\n")
    (root / "secret" / "pay.md").write_text(f"# Payroll\n\n{PAY}\n")
    (root / "pub" / "cafeteria.md").write_text(f"# Cafeteria\n\n{PUBLIC}\n")
    (base / "outside").mkdir()
    (base / "outside" / "keys.md").write_text(f"# Keys\n\n{KEYS}\n")
    return root


def _settings(base: Path, **ingest: Any) -> Settings:
    access = base / "access.json"
    access.write_text(json.dumps({"keys": [{"name": "fin", "sha256": hash_key("fin-key"), "groups": ["finance"]}]}))
    return Settings(
        data_dir=base / "data",
        store={"url": f"memory://?name={base.name}", "collection": "docs"},
        embed={"url": "hash://", "batch_size": 8},
        chat={"url": "extractive://"},
        retrieval={"k": 10, "min_score": 0.0},
        auth={"access_file": str(access)},
        ingest=ingest,
    )


async def _ingest(cfg: Settings, root: Path, **kw: Any) -> tuple[IngestReport, VectorStore]:
    store, embedder = make_store(cfg), make_embedder(cfg)
    report = await ingest_source(cfg, store, embedder, str(root), **kw)
    return report, store


async def _all_chunks(store: VectorStore) -> list[Chunk]:
    """Every stored chunk, unfiltered (k = the count; 256 = the hashing embedder's default dimension)."""
    n = await store.count()
    return [hit.chunk for hit in await store.search(np.ones(256, dtype=np.float32), n)] if n else []


async def _search(cfg: Settings, store: VectorStore, query: str, key: str | None = None) -> str:
    """The hits of a /v1/search answer as JSON text (the query it echoes left out), anonymous unless a key is given."""
    pipeline = Pipeline(cfg, store, make_embedder(cfg), make_chat(cfg))
    app = create_app(cfg, pipeline=pipeline)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post("/v1/search", json={"query": query, "k": 20}, headers=headers)
    assert r.status_code == 200, r.text
    return json.dumps(r.json()["data"])


def _reasons(pairs: Sequence[tuple[str, str]], root: Path) -> dict[str, str]:
    prefix = root.resolve().as_uri() + "/"
    return {s[len(prefix) :]: r for s, r in pairs if s.startswith(prefix)}


def _swap_for_link(path: Path, target: Path) -> None:
    """Replace ``path`` by a symbolic link to ``target`` in one rename, as an attacker would."""
    tmp = path.parent.parent / f"swap-{path.name}"
    os.symlink(target, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Reads: the listed file or a reported failure, never another file
# --------------------------------------------------------------------------------------------------


async def _listed(loader: FolderLoader) -> dict[str, Item]:
    return {i.name: i async for i in loader.items() if not i.skip and not i.error}


async def test_a_file_swapped_for_a_symlink_after_listing_fails_and_its_target_is_not_read(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    loader = FolderLoader(str(root))
    items = await _listed(loader)
    _swap_for_link(root / "pub" / "cafeteria.md", tmp_path / "outside" / "keys.md")
    got = await loader.fetch_many([items["pub/cafeteria.md"], items["secret/pay.md"]])
    assert isinstance(got[0], ChangedError) and got[0].strerror == "changed since listing: now a symbolic link"
    assert isinstance(got[1], bytes) and PAY.encode() in got[1]  # the rest of the group is read
    with pytest.raises(ChangedError, match="now a symbolic link"):
        await loader.fetch(items["pub/cafeteria.md"])


async def test_a_folder_swapped_for_a_symlink_after_listing_fails_for_the_files_listed_in_it(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (tmp_path / "outside" / "cafeteria.md").write_text(f"# Cafeteria\n\n{KEYS}\n")
    loader = FolderLoader(str(root))
    items = await _listed(loader)
    (root / "pub").rename(tmp_path / "pub-moved")
    os.symlink(tmp_path / "outside", root / "pub")  # root/pub/cafeteria.md now leads to outside/cafeteria.md
    [got] = await loader.fetch_many([items["pub/cafeteria.md"]])
    assert isinstance(got, ChangedError)
    assert got.strerror == "changed since listing: folder 'pub' on its path is now a symbolic link"


async def test_a_file_replaced_renamed_over_or_modified_after_listing_fails_as_changed(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "pub" / "other.md").write_text("# Other\n\nanother public file\n")
    (root / "pub" / "grows.md").write_text("# Grows\n\nshort\n")
    loader = FolderLoader(str(root))
    items = await _listed(loader)
    os.replace(root / "secret" / "pay.md", root / "pub" / "cafeteria.md")  # same path, another file (inode)
    with (root / "pub" / "grows.md").open("a") as f:
        f.write("more text, appended after the listing\n")
    got = await loader.fetch_many([items["pub/cafeteria.md"], items["pub/grows.md"], items["pub/other.md"]])
    assert isinstance(got[0], ChangedError) and "now another file" in str(got[0].strerror)
    assert isinstance(got[1], ChangedError) and "modified" in str(got[1].strerror)
    assert got[2] == b"# Other\n\nanother public file\n"


async def test_a_named_pipe_swapped_in_after_listing_fails_without_being_opened(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    loader = FolderLoader(str(root))
    items = await _listed(loader)
    (root / "pub" / "cafeteria.md").unlink()
    os.mkfifo(root / "pub" / "cafeteria.md")  # opening it for reading without O_NONBLOCK would wait for a writer
    [got] = await asyncio.wait_for(loader.fetch_many([items["pub/cafeteria.md"]]), timeout=60)
    assert isinstance(got, ChangedError) and got.strerror == "changed since listing: now a named pipe"


async def test_an_item_the_loader_did_not_list_is_not_read(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    loader = FolderLoader(str(root))
    outside = tmp_path / "outside" / "keys.md"
    with pytest.raises(OSError, match="not a file listed by this loader"):
        await loader.fetch(Item(uri=outside.as_uri(), name="keys.md", size=outside.stat().st_size))


async def test_a_file_swapped_for_a_symlink_during_a_run_fails_and_keeps_its_stored_chunks(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    cfg = _settings(tmp_path)
    first, store = await _ingest(cfg, root)
    assert first.failed == () and first.added == 2
    cafeteria = (root / "pub" / "cafeteria.md").as_uri()
    before = {c.id: c for c in await _all_chunks(store) if c.source == cafeteria}
    assert before

    # Between the listing and the first read (the run reports its document count in between).
    def swap(_: int) -> None:
        _swap_for_link(root / "pub" / "cafeteria.md", tmp_path / "outside" / "keys.md")

    second, store = await _ingest(cfg, root, total=swap)
    swapped = "cannot read: changed since listing: now a symbolic link"
    assert _reasons(second.failed, root) == {"pub/cafeteria.md": swapped}
    chunks = await _all_chunks(store)
    assert not [c for c in chunks if "keysmarkzq" in c.text]
    assert {c.id: c for c in chunks if c.source == cafeteria} == before  # a failure keeps what was stored
    assert "keysmarkzq" not in await _search(cfg, store, "service credentials OPENAI_API_KEY keysmarkzq")

    # The next run lists the link itself: a link out of the root is refused by policy, and the document goes.
    third, store = await _ingest(cfg, root)
    assert _reasons(third.skipped, root) == {"pub/cafeteria.md": "symbolic link pointing outside the source root"}
    assert third.deleted == 1 and not [c for c in await _all_chunks(store) if c.source == cafeteria]


def test_files_flipping_to_symlinks_throughout_a_cli_run_never_get_the_target_indexed(tmp_path: Path) -> None:
    """``rag ingest`` in its own process while a thread keeps swapping files for links to a secrets file."""
    root = _tree(tmp_path)
    # Steady files first: the flipping ones come after them in path order, so they are read in a later
    # read-ahead group, well after the listing, by when each may have turned into a link or back.
    steady = [root / "pub" / f"a-{i:02d}.md" for i in range(40)]
    names = [root / "pub" / f"note-{i:02d}.md" for i in range(16)]
    for path in steady + names:
        path.write_text(f"# {path.stem}\n\nA public note about the {path.stem} meeting.\n")
    staging = tmp_path / "staging"  # same file system, outside the root: renames from here are atomic
    staging.mkdir()
    data = tmp_path / "data"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "RAG_DATA_DIR": str(data),
        "RAG_STORE__URL": f"chroma://{data}/chroma",
        "RAG_EMBED__URL": "hash://",
    }
    stop = threading.Event()
    flips = 0

    def flip() -> None:
        # One file at a time, picked at random: at any moment each file is a link or a file independently of
        # the others, so between a file's listing and its read it is as likely to have become a link as not.
        nonlocal flips
        rng, linked = random.Random(7), [False] * len(names)
        while not stop.is_set():
            j = rng.randrange(len(names))
            path, tmp = names[j], staging / names[j].name
            if linked[j]:
                tmp.write_text(f"# {path.stem}\n\nA public note about the {path.stem} meeting.\n")
            else:
                os.symlink(tmp_path / "outside" / "keys.md", tmp)
            os.replace(tmp, path)
            linked[j] = not linked[j]
            flips += 1
            if flips % len(names) == 0:
                stop.wait(0.001)  # leave the ingest process some of the cores

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(2):
            proc = subprocess.run(
                [str(RAG), "ingest", str(root), "--report", str(data / "report.json")],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert proc.returncode in (0, 1), proc.stderr
    finally:
        stop.set()
        flipper.join()
    assert flips > 10 * len(names)
    report = json.loads((data / "report.json").read_text(encoding="utf-8"))
    for entry in report["failed"] + report["skipped"]:
        assert entry["reason"].startswith(("cannot read: changed since listing", "symbolic link pointing outside"))

    cfg = Settings(data_dir=data, store={"url": f"chroma://{data}/chroma"}, embed={"url": "hash://"})
    store = make_store(cfg)

    async def stored() -> list[Chunk]:
        await store.open(make_embedder(cfg).info, create=False)
        try:
            return await _all_chunks(store)
        finally:
            await store.close()

    chunks = asyncio.run(stored())
    assert chunks and not [c for c in chunks if "keysmarkzq" in c.text]


# --------------------------------------------------------------------------------------------------
# ACLs: a link or a second name never moves a document to another ACL
# --------------------------------------------------------------------------------------------------


async def test_a_symlink_inside_the_root_is_read_under_its_targets_acl(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.symlink("../secret/pay.md", root / "pub" / "pay-link.md")
    cfg = _settings(tmp_path)
    report, store = await _ingest(cfg, root)
    assert report.failed == () and report.skipped == () and report.added == 3
    groups = {c.source: c.groups for c in await _all_chunks(store)}
    assert groups[(root / "pub" / "pay-link.md").as_uri()] == ("finance",)
    assert groups[(root / "pub" / "cafeteria.md").as_uri()] == ("public",)
    query = "payroll ledger salary paymarkzq"
    assert "paymarkzq" not in await _search(cfg, store, query)
    found = json.loads(await _search(cfg, store, query, key="fin-key"))
    assert (root / "pub" / "pay-link.md").as_uri() in {h["source"] for h in found}


async def test_follow_links_skip_reports_links_inside_the_root_as_skipped(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.symlink("../secret/pay.md", root / "pub" / "pay-link.md")
    cfg = _settings(tmp_path, follow_links="skip")
    report, store = await _ingest(cfg, root)
    assert _reasons(report.skipped, root) == {"pub/pay-link.md": "symbolic link (not followed: follow_links=skip)"}
    assert (root / "pub" / "pay-link.md").as_uri() not in {c.source for c in await _all_chunks(store)}


async def test_a_symlink_out_of_the_root_is_skipped_with_its_reason_and_never_read(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.symlink(tmp_path / "outside" / "keys.md", root / "pub" / "keys.md")
    os.symlink("../../outside", root / "pub" / "outside-folder")
    cfg = _settings(tmp_path)
    report, store = await _ingest(cfg, root)
    assert _reasons(report.skipped, root) == {
        "pub/keys.md": "symbolic link pointing outside the source root",
        "pub/outside-folder": "symbolic link to a folder (not followed)",
    }
    assert not [c for c in await _all_chunks(store) if "keysmarkzq" in c.text]


async def test_a_hard_link_across_acls_is_refused_under_both_names(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.link(root / "secret" / "pay.md", root / "pub" / "pay-copy.md")
    cfg = _settings(tmp_path)
    report, store = await _ingest(cfg, root)
    reason = "hard link whose names lie under ACLs with no group in common (pub/pay-copy.md, secret/pay.md)"
    assert _reasons(report.skipped, root) == {"pub/pay-copy.md": reason, "secret/pay.md": reason}
    assert report.added == 1 and not [c for c in await _all_chunks(store) if "paymarkzq" in c.text]
    assert "paymarkzq" not in await _search(cfg, store, "payroll ledger salary paymarkzq")


async def test_a_hard_link_with_a_name_outside_the_root_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.link(tmp_path / "outside" / "keys.md", root / "pub" / "keys.md")
    os.link(root / "secret" / "pay.md", root / "secret" / ".pay-backup.md")  # a hidden name still counts
    cfg = _settings(tmp_path)
    report, store = await _ingest(cfg, root)
    skipped = _reasons(report.skipped, root)
    assert skipped["pub/keys.md"].startswith("hard link with 2 names, 1 of them in the source")
    assert skipped["secret/.pay-backup.md"] == "hidden file"
    assert "secret/pay.md" not in skipped  # both its names were found, under the same ACL
    groups = {c.source: c.groups for c in await _all_chunks(store)}
    assert groups[(root / "secret" / "pay.md").as_uri()] == ("finance",)
    assert (root / "pub" / "keys.md").as_uri() not in groups


async def test_hard_links_under_overlapping_acls_get_the_groups_they_share(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "board").mkdir()
    (root / "board" / ".rag-acl.yaml").write_text("groups: [finance, board]\n")
    os.link(root / "secret" / "pay.md", root / "board" / "pay.md")
    report, store = await _ingest(_settings(tmp_path), root)
    assert report.failed == () and report.skipped == ()
    groups = {c.source: c.groups for c in await _all_chunks(store)}
    assert groups[(root / "board" / "pay.md").as_uri()] == ("finance",)
    assert groups[(root / "secret" / "pay.md").as_uri()] == ("finance",)


async def test_a_document_first_stored_through_a_link_is_regrouped_to_its_targets_acl(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "pub" / "pay-link.md").write_text(f"# Payroll\n\n{PAY}\n")  # an ordinary public file at first
    cfg = _settings(tmp_path)
    _, store = await _ingest(cfg, root)
    (root / "pub" / "pay-link.md").unlink()
    os.symlink("../secret/pay.md", root / "pub" / "pay-link.md")  # same bytes, now a link into secret/
    report, store = await _ingest(cfg, root)
    assert report.regrouped + report.updated == 1
    groups = {c.source: c.groups for c in await _all_chunks(store)}
    assert groups[(root / "pub" / "pay-link.md").as_uri()] == ("finance",)
    assert "paymarkzq" not in await _search(cfg, store, "payroll ledger salary paymarkzq")


# --------------------------------------------------------------------------------------------------
# Report lines and names
# --------------------------------------------------------------------------------------------------


async def test_hidden_files_and_folders_are_reported_a_folder_once_and_acl_files_not_at_all(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / ".git" / "objects").mkdir(parents=True)
    for i in range(3):
        (root / ".git" / "objects" / f"{i}.md").write_text("x")
    (root / "pub" / ".draft.md").write_text("# Draft\n\nnot yet\n")
    (root / "pub" / ".cache").mkdir()
    (root / "pub" / ".cache" / "c.md").write_text("c")
    report, _ = await _ingest(_settings(tmp_path), root)
    assert _reasons(report.skipped, root) == {
        ".git/": "hidden folder",
        "pub/.cache/": "hidden folder",
        "pub/.draft.md": "hidden file",
    }


async def test_file_names_that_are_not_utf8_are_ingested_with_text_titles_into_chroma(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    latin1 = os.fsdecode(b"caf\xe9-menu.md")  # Latin-1 bytes: not UTF-8, not CP949 either
    korean = os.fsdecode("회의록.md".encode("cp949"))  # a Korean Windows name copied over unconverted
    for name in (latin1, korean):
        (root / "pub" / name).write_text(f"{PUBLIC}\n")
    data = tmp_path / "data"
    cfg = Settings(data_dir=data, store={"url": f"chroma://{data}/chroma"}, embed={"url": "hash://"})
    store, embedder = make_store(cfg), make_embedder(cfg)
    try:
        report = await ingest_source(cfg, store, embedder, str(root))
        assert report.failed == () and report.added == 4
        chunks = await _all_chunks(store)
    finally:
        await store.close()
    titles = {path_of(c.source): c.title for c in chunks}
    assert titles[root / "pub" / latin1] == "caf\ufffd menu"
    assert titles[root / "pub" / korean] == "회의록"
    for chunk in chunks:
        assert path_of(chunk.source).is_file()  # the URI leads back to the very file (its bytes)
        json.dumps([chunk.source, chunk.title, chunk.text], ensure_ascii=False).encode("utf-8")  # no lone surrogates


async def test_reasons_naming_files_that_are_not_utf8_are_valid_text(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "pub" / os.fsdecode(b"diagram.p\xe9g")).write_bytes(b"\x89PNG")
    (root / os.fsdecode(b"r\xe9sum\xe9s")).mkdir()
    (root / os.fsdecode(b"r\xe9sum\xe9s") / ".rag-acl.yaml").write_text("groups: oops\n")
    (root / os.fsdecode(b"r\xe9sum\xe9s") / "cv.md").write_text("# CV\n\ntext\n")
    (root / os.fsdecode(b".h\xe9")).mkdir()
    report, _ = await _ingest(_settings(tmp_path), root)
    reasons = _reasons(report.skipped + report.failed, root)
    assert reasons["pub/diagram.p%E9g"] == "unsupported file type '.p\ufffdg'"
    assert reasons[".h%E9/"] == "hidden folder"
    assert "r\ufffdsum\ufffds/.rag-acl.yaml must contain 'groups: [name, ...]'" in reasons["r%E9sum%E9s/cv.md"]
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # as `rag ingest --report` writes it

"""Milvus adapter: Milvus Lite (``milvus+lite:///data/rag.db``) or a server (``milvus://host:19530``).

Both go through pymilvus ``MilvusClient``. Lexical search is Milvus's own BM25: a ``BM25`` function
fills the sparse field ``text_sparse`` from ``lex``, which holds the chunk's title, section and text
already tokenised by our tokeniser and joined by spaces (so Korean gets character bigrams or morphemes,
and Milvus's ``standard`` analyzer, which splits on non-word characters, reproduces the tokens exactly).
Collections made before ``lex`` existed fed the function from ``text``; they still work, with Milvus's
analyzer on the raw query (poor for Korean), and say so in the log: re-ingest to upgrade.

A ``kiwi`` collection also keeps ``lex_bigram`` (the same text as character bigrams) with its own BM25
field ``bigram_sparse``: a Korean query searches both and fuses them as the in-process index does
(``rag.lexical.tokens.hangul_fusion``). Older kiwi collections without it search morphemes alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rag.errors import ConfigError, InvalidRequest, RagError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from rag.lexical.fusion import fuse_lexical
from rag.lexical.index import BM25_B, BM25_K1
from rag.lexical.tokens import (
    bigram_tokens,
    coverage,
    hangul_fusion,
    lexical_text,
    make_batch_tokenizer,
    make_tokenizer,
)
from rag.stores import lock
from rag.stores.common import (
    batched,
    check_embedder,
    from_metadata,
    local_path,
    not_found,
    to_metadata,
    validate_batch,
    validate_k,
    validate_query,
)
from rag.types import Chunk, EmbedderInfo, Filter, ScoredChunk, matches_nothing, validate_filter

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_EMBEDDER_ID = "rag.embedder_id"
_EMBEDDER_DIM = "rag.embedder_dim"
_TOKENIZER = "rag.lexical_tokenizer"

# VARCHAR limits in UTF-8 bytes (the server counts bytes; Lite counts characters, bytes is the stricter).
_VARCHAR = {
    "id": 64,
    "text": 65535,
    "lex": 65535,
    "lex_bigram": 65535,
    "source": 4096,
    "title": 2048,
    "section": 2048,
    "lang": 32,
    "doc_hash": 128,
    "content_hash": 128,
}
_MAX_GROUPS = 256
_GROUP_BYTES = 256
_NO_PAGE = -1
# Chunk.index is stored as chunk_index: ``index`` reads too much like a keyword in filter expressions.
_OUTPUT = ["id", "text", "source", "title", "section", "lang", "doc_hash", "content_hash", "page"]
_OUTPUT += ["chunk_index", "mtime", "ingested_at", "groups"]
# Milvus caps query windows (offset + limit) at 16384; ask for ids in slices well below it.
_SLICE = 1000
# Upsert requests stay well under gRPC's default 64 MiB message limit.
_BATCH_BYTES = 16 * 1024 * 1024
# HNSW exploration: well above k so small and filtered collections lose no recall.
_EF = 200
# ``lex`` holds our tokens joined by spaces; the standard analyzer splits them back without change.
_ANALYZER = {"tokenizer": "standard"}


def _similarity(hit: dict[str, Any]) -> float:
    """Milvus reports COSINE as the similarity itself (higher is better), so this only reads it."""
    return float(hit["distance"])


def _literal(value: str | int) -> str:
    """A filter-expression literal; Lite has no filter_params templating, so strings are escaped here."""
    if isinstance(value, int):
        return str(int(value))
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def _expr(flt: Filter | None) -> str:
    """The boolean expression for a filter ('' when it restricts nothing)."""
    if flt is None:
        return ""
    clauses: list[str] = []
    if flt.groups is not None:
        clauses.append(f"ARRAY_CONTAINS_ANY(groups, {_list(flt.groups)})")
    if flt.sources is not None:
        clauses.append(f"source in {_list(flt.sources)}")
    if flt.exclude_sources:
        clauses.append(f"source not in {_list(flt.exclude_sources)}")
    for key, value in flt.where.items():
        clause = f"{key} == {_literal(value)}"
        if key == "page":
            # A missing page is stored as _NO_PAGE: 'page == -1' must not match chunks without a page.
            clause += f" and page != {_NO_PAGE}"
        clauses.append(clause)
    return " and ".join(f"({c})" for c in clauses)


def _bm25(hit: dict[str, Any]) -> float:
    """A BM25 score, higher is better: Lite reports it negated (more negative = better), a server positive."""
    return abs(float(hit["distance"]))


def _lex(tokens: list[str]) -> str:
    """Tokens joined for the ``lex`` field, cut at whole tokens to its byte limit (it is an index, not content)."""
    out = " ".join(tokens)
    if len(out.encode("utf-8")) <= _VARCHAR["lex"]:
        return out
    size, kept = 0, []
    for t in tokens:
        size += len(t.encode("utf-8")) + 1
        if size > _VARCHAR["lex"]:
            break
        kept.append(t)
    log.warning("lexical tokens of a chunk cut to %d of %d (Milvus field limit)", len(kept), len(tokens))
    return " ".join(kept)


def _row(chunk: Chunk, vector: np.ndarray, lex: str | None, lex_bigram: str | None = None) -> dict[str, Any]:
    """One entity; refuses values over a field's limit rather than letting them be cut or rejected late."""
    meta = to_metadata(chunk)
    row: dict[str, Any] = {
        "id": chunk.id,
        "vector": vector.tolist(),
        "text": chunk.text,
        "source": meta["source"],
        "title": meta["title"],
        "section": meta["section"],
        "lang": meta["lang"],
        "doc_hash": meta["doc_hash"],
        "content_hash": meta["content_hash"],
        "page": meta.get("page", _NO_PAGE),
        "chunk_index": meta["index"],
        "mtime": meta["mtime"],
        "ingested_at": meta["ingested_at"],
        "groups": meta["groups"],
    }
    if lex is not None:
        row["lex"] = lex
    if lex_bigram is not None:
        row["lex_bigram"] = lex_bigram
    for name, limit in _VARCHAR.items():
        if name not in row:
            continue
        size = len(str(row[name]).encode("utf-8"))
        if size > limit:
            raise InvalidRequest(
                f"chunk {chunk.id!r} of {chunk.source!r}: field '{name}' is {size} bytes, Milvus allows {limit}; "
                f"use a smaller chunk size or shorter metadata",
                param=name,
            )
    if chunk.page is not None and chunk.page < 0:
        raise InvalidRequest(f"chunk {chunk.id!r} of {chunk.source!r}: page must be >= 0, got {chunk.page}")
    if len(chunk.groups) > _MAX_GROUPS or any(len(g.encode("utf-8")) > _GROUP_BYTES for g in chunk.groups):
        raise InvalidRequest(
            f"chunk {chunk.id!r} of {chunk.source!r}: at most {_MAX_GROUPS} groups of up to {_GROUP_BYTES} bytes each",
            param="groups",
        )
    return row


def _upsert_batches(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split rows so no request nears gRPC's message limit (texts can be up to 64 KiB each)."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        row_bytes = len(row["text"].encode("utf-8")) + len(row.get("lex", "").encode("utf-8"))
        row_bytes += len(row.get("lex_bigram", "").encode("utf-8"))
        row_bytes += 8 * len(row["vector"]) + 1024
        if batches[-1] and (len(batches[-1]) >= _SLICE or size + row_bytes > _BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(row)
        size += row_bytes
    return [b for b in batches if b]


def _chunk(entity: dict[str, Any]) -> Chunk:
    meta = dict(entity)
    meta["index"] = meta.pop("chunk_index", 0)
    if meta.get("page") == _NO_PAGE:
        meta["page"] = None
    return from_metadata(str(meta.pop("id")), str(meta.pop("text", "")), meta)


# Milvus Lite serves each .db from an in-process server that holds a file lock; it is stopped when the
# last store using that file closes, so the data is flushed and another process can open it. Our own
# lock (rag.stores.lock) is taken first, so a second process is refused with the holder named.
_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def _lite_acquire(path: str) -> None:
    with _LITE_LOCK:
        _LITE_USERS[path] = _LITE_USERS.get(path, 0) + 1


def _lite_release(path: str) -> None:
    with _LITE_LOCK:
        left = _LITE_USERS.get(path, 0) - 1
        if left > 0:
            _LITE_USERS[path] = left
            return
        _LITE_USERS.pop(path, None)
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)


class MilvusStore:
    """One Milvus collection (HNSW, COSINE); every SDK call runs in a worker thread."""

    def __init__(
        self, uri: str, collection: str, *, token: str = "", timeout_s: float | None = None, tokenizer: str = "kiwi"
    ) -> None:
        self._uri = uri
        self._tokenizer_name = tokenizer
        self._tokenize = make_tokenizer(tokenizer)
        self._tokenize_many = make_batch_tokenizer(tokenizer)
        # False for a collection made before the ``lex`` field: BM25 then reads raw text.
        self._has_lex = True
        # True for a kiwi collection with the ``lex_bigram`` field (Korean queries fuse both rankings).
        self._has_bigram = tokenizer == "kiwi"
        self._lex_tokenizer = tokenizer  # what the collection's ``lex`` field was analysed with
        self._lite = uri.endswith(".db")
        self._name = collection
        self._token = token
        self._timeout_s = timeout_s
        self._client: Any = None
        self._dim = 0

    @property
    def name(self) -> str:
        """Collection name."""
        return self._name

    def local_dir(self, kind: str) -> Path | None:
        """Milvus Lite: ``<file>.<kind>/`` beside the database file; a server keeps nothing on this machine."""
        if not self._lite:
            return None
        path = Path(self._uri)
        return path.parent / f"{path.name}.{kind}"

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a blocking SDK call in a thread; pymilvus and gRPC errors become RagErrors here."""
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except RagError:
            raise
        except Exception as e:
            raise self._convert(e) from e

    def _convert(self, e: Exception) -> RagError:
        from pymilvus.exceptions import MilvusException

        code = getattr(e, "code", None) if isinstance(e, MilvusException) else None
        text = str(getattr(e, "message", "") or e)
        if code == 2 or "Fail connecting" in text or "UNAVAILABLE" in text:
            return UpstreamUnavailable(f"cannot reach Milvus at {self._uri}: {text}")
        if "DEADLINE_EXCEEDED" in text or "Timeout" in type(e).__name__:
            return UpstreamTimeout(f"Milvus at {self._uri} did not answer in time: {text}")
        return UpstreamError(f"Milvus at {self._uri} failed: {type(e).__name__}: {text}")

    def _opened(self) -> Any:
        if self._client is None:
            raise RuntimeError("MilvusStore used before open()")
        return self._client

    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        if self._lite:
            Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(Path(self._uri), "Milvus Lite database")
            _lite_acquire(self._uri)
            try:
                return MilvusClient(self._uri)
            except Exception:
                _lite_release(self._uri)
                lock.release(Path(self._uri))
                raise
        return MilvusClient(self._uri, token=self._token, timeout=self._timeout_s)

    def _create(self, dim: int, embedder: EmbedderInfo) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, max_length=_VARCHAR["id"], is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", DataType.VARCHAR, max_length=_VARCHAR["text"])
        # BM25 branches: (analysed text field, its sparse field, the function between them); a kiwi
        # collection adds character bigrams for Hangul queries.
        lexical = [("lex", "text_sparse", "text_bm25")]
        if self._tokenizer_name == "kiwi":
            lexical.append(("lex_bigram", "bigram_sparse", "bigram_bm25"))
        for text, sparse, _ in lexical:
            schema.add_field(
                text, DataType.VARCHAR, max_length=_VARCHAR[text], enable_analyzer=True, analyzer_params=_ANALYZER
            )
            schema.add_field(sparse, DataType.SPARSE_FLOAT_VECTOR)
        for name in ("source", "title", "section", "lang", "doc_hash", "content_hash"):
            schema.add_field(name, DataType.VARCHAR, max_length=_VARCHAR[name])
        schema.add_field("page", DataType.INT64)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("mtime", DataType.DOUBLE)
        schema.add_field("ingested_at", DataType.DOUBLE)
        schema.add_field(
            "groups", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=_MAX_GROUPS, max_length=_GROUP_BYTES
        )
        for text, sparse, function in lexical:
            schema.add_function(
                Function(
                    name=function,
                    function_type=FunctionType.BM25,
                    input_field_names=[text],
                    output_field_names=[sparse],
                )
            )
        index = MilvusClient.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
        bm25 = {"bm25_k1": BM25_K1, "bm25_b": BM25_B}
        for _, field, _ in lexical:
            # pymilvus flattens params into one key per parameter, which a server reads; Milvus Lite reads
            # only a JSON "params" key and silently keeps its defaults (k1 1.5, b 0.75) otherwise.
            index.add_index(
                field,
                index_type="SPARSE_INVERTED_INDEX",
                metric_type="BM25",
                params={"params": bm25} if self._lite else bm25,
            )
        self._client.create_collection(
            self._name,
            schema=schema,
            index_params=index,
            consistency_level="Strong",
            properties={_EMBEDDER_ID: embedder.id, _EMBEDDER_DIM: str(dim), _TOKENIZER: self._tokenizer_name},
        )
        log.info("created Milvus collection %s (dim %d) at %s", self._name, dim, self._uri)

    async def open(self, embedder: EmbedderInfo, *, create: bool) -> None:
        """Connect, then get (or create) the collection, check its embedder and load it."""
        await self.close()
        self._client = await self._call(self._connect)
        try:
            if not await self._call(self._client.has_collection, self._name):
                if not create:
                    raise not_found(self._name, f"Milvus at {self._uri}")
                await self._call(self._create, embedder.dim, embedder)
            desc = await self._call(self._client.describe_collection, self._name)
            props = desc.get("properties") or {}
            dims = [f.get("params", {}).get("dim") for f in desc.get("fields", []) if f.get("name") == "vector"]
            dim = dims[0] if dims else props.get(_EMBEDDER_DIM)
            check_embedder(self._name, props.get(_EMBEDDER_ID), None if dim is None else int(dim), embedder)
            self._lexical_from(desc, props)
            # Lite (and a restarted server) keeps collections released until someone loads them.
            await self._call(self._client.load_collection, self._name)
        except BaseException:
            await self.close()
            raise
        self._dim = embedder.dim
        log.info("opened Milvus collection %s at %s", self._name, self._uri)

    def _lexical_from(self, desc: dict[str, Any], props: dict[str, Any]) -> None:
        """Queries must be tokenised as the collection's documents were: follow what it recorded."""
        names = {f.get("name") for f in desc.get("fields", [])}
        self._has_lex = "lex" in names
        self._has_bigram = "lex_bigram" in names
        if not self._has_lex:
            log.warning(
                "Milvus collection %s predates the tokenised 'lex' field: BM25 uses Milvus's analyzer on raw text "
                "(weak for Korean); re-ingest into a new collection to upgrade",
                self._name,
            )
            return
        recorded = str(props.get(_TOKENIZER) or self._tokenizer_name)
        if recorded != self._tokenizer_name:
            log.warning(
                "Milvus collection %s was indexed with the %r tokenizer, %r is configured; queries use %r",
                self._name,
                recorded,
                self._tokenizer_name,
                recorded,
            )
            self._tokenize = make_tokenizer(recorded)
            self._tokenize_many = make_batch_tokenizer(recorded)
        self._lex_tokenizer = recorded

    def _lex_of(self, chunks: Sequence[Chunk]) -> list[str | None]:
        if not self._has_lex:
            return [None] * len(chunks)
        return [_lex(tokens) for tokens in self._tokenize_many([lexical_text(c) for c in chunks])]

    def _lex_bigram_of(self, chunk: Chunk) -> str | None:
        return _lex(bigram_tokens(lexical_text(chunk))) if self._has_bigram else None

    async def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace chunks by id; texts over the field limit are refused, never cut."""
        client = self._opened()
        arr = validate_batch(chunks, vectors, self._dim)
        lex = self._lex_of(chunks)
        rows = [_row(c, v, lx, self._lex_bigram_of(c)) for c, v, lx in zip(chunks, arr, lex, strict=True)]
        for part in _upsert_batches(rows):
            await self._call(client.upsert, self._name, part)

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id; unknown ids are ignored."""
        client = self._opened()
        for part in batched(list(ids), _SLICE):
            await self._call(client.delete, self._name, ids=list(part))

    async def delete_sources(self, sources: Sequence[str]) -> int:
        """Remove every chunk of the given sources; returns how many were removed."""
        if not sources:
            return 0
        flt = Filter(sources=tuple(sources))
        n = await self.count(flt)
        if n:
            await self._call(self._opened().delete, self._name, filter=_expr(flt))
        return n

    async def search(self, vector: np.ndarray, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Nearest chunks by cosine similarity; the filter is part of the Milvus search."""
        client = self._opened()
        validate_k(k)
        validate_filter(flt)
        query = validate_query(vector, self._dim)
        if matches_nothing(flt):
            return []
        res = await self._call(
            client.search,
            self._name,
            data=[query.tolist()],
            anns_field="vector",
            limit=k,
            filter=_expr(flt),
            output_fields=_OUTPUT,
            search_params={"metric_type": "COSINE", "params": {"ef": max(_EF, k)}},
        )
        scored = [ScoredChunk(_chunk(hit["entity"]), _similarity(hit)) for hit in res[0]]
        return sorted(scored, key=lambda s: -s.score)

    async def search_text(self, text: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """BM25 top-k by Milvus's sparse BM25 index (two fused for a Korean query); the filter is part of it."""
        self._opened()
        validate_k(k)
        validate_filter(flt)
        if matches_nothing(flt):
            return []
        query = text
        if self._has_lex:
            tokens = self._tokenize(text)
            if not tokens:
                return []
            query = " ".join(tokens)
        hits = await self._bm25_search(query, "text_sparse", k, flt)
        if self._has_bigram and hangul_fusion("kiwi", text):
            bigrams = await self._bm25_search(" ".join(bigram_tokens(text)), "bigram_sparse", k, flt)
            hits = fuse_lexical([hits, bigrams], k)
        return hits

    async def _bm25_search(self, query: str, field: str, k: int, flt: Filter | None) -> list[ScoredChunk]:
        if not query.strip():
            return []
        res = await self._call(
            self._opened().search,
            self._name,
            data=[query],
            anns_field=field,
            limit=k,
            filter=_expr(flt),
            output_fields=_OUTPUT,
            search_params={"metric_type": "BM25", "params": {}},
        )
        scored = [ScoredChunk(_chunk(hit["entity"]), _bm25(hit)) for hit in res[0]]
        return sorted((s for s in scored if s.score > 0), key=lambda s: -s.score)

    async def term_coverage(
        self, tokenizer: str, query_tokens: Sequence[str], chunks: Sequence[Chunk]
    ) -> dict[str, float]:
        """Each chunk's share of the query's terms, from its ``lex`` field: the tokens BM25 indexed (``TermCoverage``).

        One query by id for the chunks asked. A chunk stored with another text, or whose tokens may have been
        cut at the field's limit, is left to the caller (who analyses it).
        """
        client = self._opened()
        if not self._has_lex or tokenizer != self._lex_tokenizer or not chunks:
            return {}
        asked = {c.id: c for c in chunks}
        fields = ["id", "title", "section", "text", "lex"]
        out: dict[str, float] = {}
        for part in batched(list(asked), _SLICE):
            rows = await self._call(client.query, self._name, filter=f"id in {_list(part)}", output_fields=fields)
            for r in rows:
                c = asked.get(str(r["id"]))
                lex = str(r.get("lex") or "")
                if c is None or (r["title"], r["section"], r["text"]) != (c.title, c.section, c.text):
                    continue
                if len(lex) * 4 > _VARCHAR["lex"] and len(lex.encode("utf-8")) > _VARCHAR["lex"] - 256:
                    continue  # near the limit: _lex may have cut the tokens
                out[c.id] = coverage(query_tokens, lex.split(" "))
        return out

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        """Fetch chunks by id, in the order asked; missing ids are skipped."""
        client = self._opened()
        found: dict[str, Chunk] = {}
        for part in batched(list(dict.fromkeys(ids)), _SLICE):
            rows = await self._call(client.query, self._name, filter=f"id in {_list(part)}", output_fields=_OUTPUT)
            found.update((str(r["id"]), _chunk(r)) for r in rows)
        return [found[i] for i in ids if i in found]

    async def count(self, flt: Filter | None = None) -> int:
        """Number of chunks matching the filter."""
        client = self._opened()
        validate_filter(flt)
        if matches_nothing(flt):
            return 0
        rows = await self._call(client.query, self._name, filter=_expr(flt), output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    async def sources(self) -> dict[str, int]:
        """Every source with its chunk count (read with a query iterator, so no window limit applies)."""
        client = self._opened()

        def scan() -> dict[str, int]:
            out: dict[str, int] = {}
            it = client.query_iterator(self._name, batch_size=_SLICE, filter="", output_fields=["source"])
            try:
                while batch := it.next():
                    for row in batch:
                        out[row["source"]] = out.get(row["source"], 0) + 1
            finally:
                it.close()
            return out

        return await self._call(scan)

    async def set_groups(self, ids: Sequence[str], groups: Sequence[str]) -> None:
        """Replace the ACL groups of stored chunks without re-embedding: re-upserted with their stored vectors."""
        client = self._opened()
        for part in batched(list(dict.fromkeys(ids)), _SLICE):
            chunks = await self.get(part)
            if not chunks:
                continue
            where = f"id in {_list([c.id for c in chunks])}"
            rows = await self._call(client.query, self._name, filter=where, output_fields=["id", "vector"])
            stored = {str(r["id"]): r["vector"] for r in rows}
            vectors = np.asarray([stored[c.id] for c in chunks], dtype=np.float32)
            await self.upsert([dataclasses.replace(c, groups=tuple(groups)) for c in chunks], vectors)

    async def drop(self) -> None:
        """Delete the whole collection (collection versions: an old version is removed)."""
        await self.close()
        self._client = await self._call(self._connect)
        try:
            if await self._call(self._client.has_collection, self._name):
                await self._call(self._client.drop_collection, self._name)
        finally:
            await self.close()

    async def set_alias(self, alias: str, target: str) -> None:
        """Point the native alias ``alias`` at collection ``target`` (created, or moved atomically)."""
        await self.close()
        self._client = await self._call(self._connect)
        try:
            try:
                current = (await self._call(self._client.describe_alias, alias)).get("collection_name")
            except UpstreamError:
                current = None
            if current is None:
                if await self._call(self._client.has_collection, alias):
                    log.warning("Milvus collection %s exists, so it cannot also be an alias; not aliased", alias)
                    return
                await self._call(self._client.create_alias, target, alias)
            elif current != target:
                await self._call(self._client.alter_alias, target, alias)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the connection; for Milvus Lite, stop its file server once no store uses it."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await self._call(client.close)
        finally:
            if self._lite:
                try:
                    await asyncio.to_thread(_lite_release, self._uri)
                finally:
                    await asyncio.to_thread(lock.release, Path(self._uri))


def from_url(url: BackendURL, settings: Settings) -> MilvusStore:
    """``milvus+lite://`` (``<data_dir>/milvus.db``), ``milvus+lite:///path/rag.db``, ``milvus://host:19530``."""
    collection = settings.store.collection
    if not _NAME.match(collection):
        raise ConfigError(
            f"Milvus collection names are letters, digits and underscores, starting with a letter or "
            f"underscore (at most 255); got {collection!r}"
        )
    if url.scheme == "milvus+lite":
        path = local_path(url, settings.data_dir)
        if path.suffix != ".db":
            raise ConfigError(
                f"Milvus Lite needs a file ending in .db, like milvus+lite:///data/rag.db; got {url.raw!r}"
            )
        return MilvusStore(str(path.resolve()), collection, tokenizer=settings.retrieval.tokenizer)
    if not url.host:
        raise ConfigError(f"a Milvus server URL needs a host, like milvus://milvus:19530; got {url.raw!r}")
    https = url.scheme == "milvus+https"
    uri = f"{'https' if https else 'http'}://{url.host}:{url.port or (443 if https else 19530)}"
    token = settings.store.api_key.get_secret_value() if settings.store.api_key else ""
    return MilvusStore(
        uri, collection, token=token, timeout_s=settings.store.timeout_s, tokenizer=settings.retrieval.tokenizer
    )

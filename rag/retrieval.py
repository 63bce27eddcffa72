"""Hybrid retrieval: dense + BM25 ranked inside the store (ACL in both queries), fused by weighted RRF.

Routing by script: a query in a language the embedder was not trained on (a Korean question to the
English-only MiniLM) is answered by BM25 alone, because its dense ranking is noise that would only
dilute the fusion (Korean nDCG@10 0.92 lexical vs 0.28 plain RRF, see README "Benchmarks").

Title links (multi-hop): after the first fusion, candidates whose title is named in the query, and
candidates whose title is named in the text of the ``title_link_top`` best chunks (a passage about
"Journal X" that says "published by the American Psychological Association" links to the chunk titled
"American Psychological Association"), are fused in as two more rankings. It only re-orders the
candidate pool already found (no second store query), so it costs a few string searches; it matters
where titles name entities (README "Retrieval"). A text links a title only as written (case kept), so
a common word that is also a title ("Oxygen", "Force") does not link single-hop articles by accident.

Relevance gate: a fused chunk counts as relevant when its dense similarity reaches ``min_score``
(only where dense was used) or it holds ``min_lexical_coverage`` of the query's terms
(``min_lexical_coverage_alone`` for a query searched by BM25 alone, where coverage is the only test and
an inflected language loses more terms to analysis). With nothing relevant, callers get no sources and
the answerer says it does not know. Where the store keeps each chunk's analysed tokens (the BM25 index
beside memory and Chroma, Milvus's ``lex`` field: ``rag.seams.TermCoverage``) the gate reads a candidate's
coverage from them, one read for the candidates it scans, and analyses nothing (the Korean analyser costs
milliseconds per chunk, and over a large corpus the candidates rarely repeat). A chunk the store cannot
answer for (another store, a text changed since) is analysed here, its tokens kept in a per-retriever LRU
keyed by its lexical text, so the gate tokenises it once however often it is asked about.

Diversity: among the k, one document holds at most ``max_chunks_per_source`` chunks while other
documents also pass the gate (``rag.context.cap_per_source``), so one huge file cannot fill the top-k.
Where a document filled its share and places are still open, the store is asked once more without that
document (``Filter.exclude_sources``): its chunks may have taken every candidate place of both retrievers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from rag.config import RetrievalSettings
from rag.context import cap_per_source
from rag.errors import RagError
from rag.lang import detect_lang
from rag.lexical.fusion import fuse
from rag.lexical.tokens import WORD, BatchTokenizer, coverage, lexical_text, make_batch_tokenizer, make_tokenizer
from rag.seams import Embedder, Reranker, TermCoverage, VectorStore
from rag.stores.common import validate_k
from rag.types import Chunk, Filter, ScoredChunk, validate_filter

log = logging.getLogger(__name__)

# Distinct chunk texts whose tokens the gate keeps (a few MB of Korean tokens per thousand chunks).
TOKEN_CACHE_CHUNKS = 20_000
# Candidates the gate tokenises together (the Korean analyser spreads a batch over its threads).
GATE_BLOCK = 8

ALL_LANGUAGES = "*"
# Substrings of embedder ids, checked in order; the first that matches gives the languages.
_KNOWN_EMBEDDERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("multilingual", frozenset({ALL_LANGUAGES})),
    ("bge-m3", frozenset({ALL_LANGUAGES})),
    ("labse", frozenset({ALL_LANGUAGES})),
    ("text-embedding-3", frozenset({ALL_LANGUAGES})),
    ("ko-", frozenset({"ko"})),
    ("all-minilm", frozenset({"en"})),
    ("all-mpnet", frozenset({"en"})),
    ("bge-small-en", frozenset({"en"})),
    ("bge-base-en", frozenset({"en"})),
    ("bge-large-en", frozenset({"en"})),
    ("e5-small-v2", frozenset({"en"})),
    ("e5-base-v2", frozenset({"en"})),
    ("e5-large-v2", frozenset({"en"})),
    ("nomic-embed-text", frozenset({"en"})),
)


def embedder_languages(embedder_id: str, configured: Sequence[str] = ()) -> frozenset[str]:
    """Languages an embedder handles: the configured list, else known from its id, else all (logged)."""
    if configured:
        return frozenset(configured)
    low = embedder_id.lower()
    for needle, langs in _KNOWN_EMBEDDERS:
        if needle in low:
            return langs
    log.info("embedder %s: languages unknown, assuming all (set RAG_RETRIEVAL__DENSE_LANGUAGES)", embedder_id)
    return frozenset({ALL_LANGUAGES})


@lru_cache(maxsize=64)
def _languages(embedder_id: str, configured: tuple[str, ...]) -> frozenset[str]:
    return embedder_languages(embedder_id, configured)


@dataclass(frozen=True)
class Route:
    """How one query is searched: its language and the weight of each ranking (0 = not run)."""

    lang: str
    dense_weight: float
    lexical_weight: float


def route(query: str, settings: RetrievalSettings, dense_langs: frozenset[str]) -> Route:
    """Weights for a query: the mode's retrievers, dense dropped when the embedder lacks the language."""
    lang = detect_lang(query)
    dense = settings.dense_weight if settings.mode in ("hybrid", "dense") else 0.0
    lexical = settings.lexical_weight if settings.mode in ("hybrid", "lexical") else 0.0
    if settings.mode == "dense":
        dense = dense or 1.0
    if settings.mode == "lexical":
        lexical = lexical or 1.0
    if settings.mode == "hybrid" and ALL_LANGUAGES not in dense_langs and lang not in dense_langs:
        dense, lexical = 0.0, lexical or 1.0
    return Route(lang, dense, lexical)


_MIN_TITLE_CHARS = 4  # shorter titles ("AI", "p.1") match by accident


def _phrase(text: str, lower: bool = True) -> str:
    """Words (lower-cased unless told) joined by single spaces and padded, so ``in`` matches whole words only."""
    return " " + " ".join(WORD.findall(text.lower() if lower else text)) + " "


def title_rankings(query: str, fused: Sequence[ScoredChunk], top: int) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
    """Candidates whose title the query names, and candidates whose title the ``top`` best chunks' texts name.

    Both keep the fused order. The query may name a title in any case; a text must write it as the title
    does ("Oxygen" is linked by "Oxygen", not by "oxygen"; "Force" not by "in force"), so common words
    that happen to be titles do not link. A link needs a title other than the linking chunk's own and
    other than the best chunk's (chunks of the document already on top gain nothing from it).
    """
    usable = [len(h.chunk.title.strip()) >= _MIN_TITLE_CHARS for h in fused]
    titles = [_phrase(h.chunk.title) if ok else "" for h, ok in zip(fused, usable, strict=True)]
    q = _phrase(query)
    named = [h for h, t in zip(fused, titles, strict=True) if t.strip() and t in q]
    if top <= 0 or not fused:
        return named, []
    titles = [_phrase(h.chunk.title, lower=False) if ok else "" for h, ok in zip(fused, usable, strict=True)]
    heads = [(titles[i], _phrase(fused[i].chunk.text, lower=False)) for i in range(min(top, len(fused)))]
    linked = [
        h
        for i, (h, t) in enumerate(zip(fused, titles, strict=True))
        if i >= len(heads) and t.strip() and t != heads[0][0] and any(t != own and t in text for own, text in heads)
    ]
    return named, linked


@dataclass(frozen=True)
class Ranked:
    """Fused candidates of one query, with what the relevance gate needs."""

    route: Route
    hits: tuple[ScoredChunk, ...]
    dense: dict[str, float]
    query_tokens: tuple[str, ...]
    # Lexical coverage of candidates, read from the store's index as the gate reaches them.
    covered: dict[Chunk, float] = field(default_factory=dict, compare=False)


class TokenCache:
    """Distinct tokens of chunk texts, the least recently used dropped past ``size`` texts (thread-safe)."""

    def __init__(self, tokenize_many: BatchTokenizer, size: int) -> None:
        self._many, self._size = tokenize_many, size
        self._sets: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The distinct texts among ``texts`` not in the cache."""
        with self._lock:
            return [t for t in dict.fromkeys(texts) if t not in self._sets]

    def fill(self, texts: Sequence[str]) -> None:
        """Tokenise the texts not in the cache, in one batch."""
        todo = self.missing(texts)
        if todo:
            self._put(zip(todo, [frozenset(t) for t in self._many(todo)], strict=True))

    def get(self, text: str) -> frozenset[str]:
        """The tokens of ``text``, tokenised now if not cached."""
        with self._lock:
            tokens = self._sets.get(text)
            if tokens is not None:
                self._sets.move_to_end(text)
                return tokens
        tokens = frozenset(self._many([text])[0])
        self._put([(text, tokens)])
        return tokens

    def _put(self, items: Iterable[tuple[str, frozenset[str]]]) -> None:
        with self._lock:
            for text, tokens in items:
                self._sets[text] = tokens
            while len(self._sets) > self._size:
                self._sets.popitem(last=False)


class Retriever:
    """Runs the routed retrievers on a store, fuses them, reranks if configured, gates relevance."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        # The store, where the gate reads coverage from it (a runtime protocol check, done once, not per query).
        self._coverage = store if isinstance(store, TermCoverage) else None
        self.tokenize = make_tokenizer(settings.tokenizer)
        self.tokenize_many = make_batch_tokenizer(settings.tokenizer)
        self._tokens = TokenCache(lambda texts: self.tokenize_many(texts), TOKEN_CACHE_CHUNKS)

    def chunk_tokens(self, chunk: Chunk) -> frozenset[str]:
        """The distinct lexical tokens of a chunk (title, section, text), tokenised once per distinct text."""
        return self._tokens.get(lexical_text(chunk))

    async def _prefetch(self, ranked: Ranked, hits: Sequence[ScoredChunk]) -> None:
        """Prepare the coverage of the hits the gate will judge on it alone.

        Read in one call from the store's lexical index where it keeps tokens; else (and for the chunks it
        does not hold) tokenised in one batch off the event loop.
        """
        todo = [h.chunk for h in hits if not self._dense_passes(ranked, h) and h.chunk not in ranked.covered]
        if todo and self._coverage is not None:
            try:
                got = await self._coverage.term_coverage(self.settings.tokenizer, ranked.query_tokens, todo)
            except RagError as e:  # the same answer comes from analysing the chunks here
                log.warning("reading term coverage from the store failed (%s); analysing the candidates", e)
                got = {}
            ranked.covered.update((c, got[c.id]) for c in todo if c.id in got)
            todo = [c for c in todo if c not in ranked.covered]
        texts = [lexical_text(c) for c in todo]
        if self._tokens.missing(texts):
            await asyncio.to_thread(self._tokens.fill, texts)

    @property
    def dense_langs(self) -> frozenset[str]:
        """Languages of the embedder in use (read per query: a collection's live version may switch embedders)."""
        return _languages(self.embedder.info.id, tuple(self.settings.dense_languages))

    async def rank(self, query: str, flt: Filter | None = None, depth: int | None = None) -> Ranked:
        """Fused candidates, best first, before the relevance gate (what benchmarks measure)."""
        validate_filter(flt)
        depth = depth or self.settings.candidates
        validate_k(depth)
        plan = route(query, self.settings, self.dense_langs)
        dense_task = self._dense(query, depth, flt) if plan.dense_weight > 0 else _none()
        lexical_task = self.store.search_text(query, depth, flt) if plan.lexical_weight > 0 else _none()
        dense, lexical = await asyncio.gather(dense_task, lexical_task)
        cfg = self.settings
        rankings = [(plan.dense_weight, dense), (plan.lexical_weight, lexical)]
        fused = fuse(rankings, cfg.rrf_k)
        if fused and (cfg.title_match_weight > 0 or cfg.title_link_weight > 0):
            named, linked = title_rankings(query, fused, cfg.title_link_top)
            rankings += [(cfg.title_match_weight, named), (cfg.title_link_weight, linked)]
            fused = fuse(rankings, cfg.rrf_k)
        if self.reranker is not None and fused:
            fused = await self._rerank(query, fused)
        return Ranked(plan, tuple(fused), {h.chunk.id: h.score for h in dense}, tuple(self.tokenize(query)))

    async def _dense(self, query: str, depth: int, flt: Filter | None) -> list[ScoredChunk]:
        vector = await self.embedder.embed_query(query)
        return await self.store.search(vector, depth, flt)

    async def _rerank(self, query: str, fused: list[ScoredChunk]) -> list[ScoredChunk]:
        assert self.reranker is not None
        head = fused[: self.settings.rerank_candidates]
        scores = await self.reranker.rerank(query, [lexical_text(h.chunk) for h in head])
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        return [replace(head[i], score=float(scores[i])) for i in order] + fused[len(head) :]

    def _dense_passes(self, ranked: Ranked, hit: ScoredChunk) -> bool:
        """Whether a chunk passes the gate on dense similarity (it was in the dense ranking, at ``min_score``)."""
        sim = ranked.dense.get(hit.chunk.id)
        return sim is not None and sim >= self.settings.min_score

    def relevant(self, ranked: Ranked, hit: ScoredChunk) -> bool:
        """Whether a fused chunk passes the gate (dense similarity or lexical coverage)."""
        if self._dense_passes(ranked, hit):
            return True
        cfg = self.settings
        floor = cfg.min_lexical_coverage if ranked.route.dense_weight > 0 else cfg.min_lexical_coverage_alone
        share = ranked.covered.get(hit.chunk)
        if share is None:
            share = coverage(ranked.query_tokens, self.chunk_tokens(hit.chunk))
        return share >= floor

    async def search(self, query: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """The top-k relevant chunks, best first (fused score in [0, 1], or the reranker's)."""
        validate_k(k)
        ranked = await self.rank(query, flt, max(k, self.settings.candidates))
        per_source = self.settings.max_chunks_per_source
        out: list[ScoredChunk] = []
        counts: dict[str, int] = {}
        admitted = await self._scan(ranked, k, per_source, out, counts)
        full = sorted(s for s, n in counts.items() if n >= per_source) if per_source > 0 else []
        if full and admitted < k:
            # A document filled its share and places are still open: its chunks may have crowded the
            # other documents out of the candidates altogether (one huge generated reference among small
            # pages), so the store is asked again without it.
            base = flt or Filter()
            again = replace(base, exclude_sources=tuple(sorted({*base.exclude_sources, *full})))
            more = await self.rank(query, again, max(k, self.settings.candidates))
            await self._scan(more, k - admitted, per_source, out, counts)
        return cap_per_source(out, k, per_source)

    async def _scan(
        self, ranked: Ranked, k: int, per_source: int, out: list[ScoredChunk], counts: dict[str, int]
    ) -> int:
        """Append relevant candidates to ``out`` until ``k`` fit within the cap; returns how many did.

        ``counts`` holds each document's chunks in ``out`` (shared by a second look).
        """
        admitted = 0
        # Fused order already puts relevant chunks first; past a few times k the gate (which reads or
        # tokenises each chunk) would only spend time on chunks that cannot matter, except where one document has
        # taken its share of the k and the others' places are still open: then the rest of the candidates
        # are scanned for chunks of other documents (one huge file can own the first few times k).
        window = max(4 * k, 20)
        # A store that keeps tokens is read once for the whole window; the analyser works in small blocks,
        # as the scan often ends early.
        block = window if self._coverage is not None else GATE_BLOCK
        ready = 0  # candidates before this one have their coverage prepared
        for i, hit in enumerate(ranked.hits):
            source = hit.chunk.source
            if i >= window:
                if per_source <= 0 or not any(n >= per_source for n in counts.values()):
                    break  # no document was capped: the scan ends where it always does
                if counts.get(source, 0) >= per_source:
                    continue
            if i >= ready:
                ready = i + block
                await self._prefetch(ranked, ranked.hits[i:ready])
            if self.relevant(ranked, hit):
                out.append(hit)
                counts[source] = counts.get(source, 0) + 1
                admitted += per_source <= 0 or counts[source] <= per_source
                if admitted == k:
                    break
        return admitted


async def _none() -> list[ScoredChunk]:
    return []

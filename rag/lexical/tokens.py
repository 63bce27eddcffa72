r"""Tokenising for lexical search, shared by BM25, title links and the extractive answerer.

Tokenisers (``RAG_RETRIEVAL__TOKENIZER``):

``word``    lower-cased letters/digits runs, English stopwords dropped, plurals folded.
``bigram``  ``word`` for non-CJK text; Hangul/CJK runs become overlapping character bigrams, so
            ``휴가는`` still meets ``휴가를`` without a dictionary.
``kiwi``    ``word`` for non-CJK text; Korean through the kiwipiepy morphological analyser (content
            morphemes only: nouns, verb/adjective stems, roots, foreign words, numbers), plus each
            compound of adjacent nouns written together (``지방은행`` gives ``지방``, ``은행`` and
            ``지방은행``, so the compound outranks text that has its parts apart). The default: best on
            the Korean set (docs/benchmarks/retrieval.md), same as ``word`` on English. A text without
            Hangul is tokenised as ``bigram`` (Chinese and Japanese runs become bigrams), so the analyser
            (about 2 s and 300 MB to load) is only loaded once Korean text is seen.

Korean queries with ``kiwi`` (:func:`hangul_fusion`): the morpheme ranking is fused by reciprocal rank
with a character-bigram ranking of the same chunks (``rag.lexical.fusion``), because each finds what the
other misses (an OCR split or a wrong analysis loses a morpheme but keeps most bigrams).

Every token is a run of ``[^\W_]`` characters (:data:`WORD`), so a store whose analyzer splits on non-word
characters (Milvus's ``standard``) reproduces the tokens exactly from a space-joined string.

:func:`sentence_terms` is the extractive answerer's view of a sentence: word tokens (question words and
Korean function words dropped too) and Hangul/CJK bigrams without verb endings. :func:`question_terms` is
its view of a question: the same, except that a Korean question's bigrams can be limited to those inside
its content morphemes (``교체되어질`` keeps ``교체``, not ``체되``, ``되어``, ``어질``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from rag.errors import ConfigError, MissingExtra
from rag.types import Chunk

Tokenizer = Callable[[str], list[str]]
# Many texts at once: ``kiwi`` analyses the Hangul ones in one call on the analyser's threads.
BatchTokenizer = Callable[[Sequence[str]], list[list[str]]]
TOKENIZERS = ("word", "bigram", "kiwi")

WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\u3040-\u30ff\u4e00-\u9fff]+")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _wordset(
    """
    a an the and or but if then else of to in on at by for with from into onto about as is are was were be
    been being am do does did done have has had having it its this that these those there here what which
    who whom whose when where why how can could should would may might must shall will not no nor so than
    too very just also any all some each every i me my we our you your he she him her they them their
    """
)
# Content morphemes kept from kiwi: nouns, pronoun-free; verb/adjective stems; roots; foreign; numbers; hanja.
_KIWI_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "VV", "VA", "XR", "SL", "SN", "SH", "MAG"})
# Morphemes that join into a compound token when written together (nouns, roots, numbers, foreign words).
_KIWI_COMPOUND = frozenset({"NNG", "NNP", "NNB", "NR", "XR", "SL", "SN", "SH"})


def fold(word: str) -> str:
    """Plural folding for ASCII words ('days' meets 'day'); other scripts unchanged."""
    if word.isascii() and len(word) > 3:
        if word.endswith("ies") and len(word) > 4:
            return word[:-3] + "y"
        if word.endswith("s") and not word.endswith(("ss", "us", "is")):
            return word[:-1]
    return word


def _words(text: str) -> list[str]:
    """Word tokens of non-CJK text."""
    return [fold(w) for w in WORD.findall(text.lower()) if w not in STOPWORDS]


def word_tokens(text: str) -> list[str]:
    """``word``: letters/digits runs of any script, lower-cased, stopwords dropped."""
    return _words(text)


def bigram_tokens(text: str) -> list[str]:
    """``bigram``: words outside CJK, overlapping character bigrams inside CJK runs (a lone character stays)."""
    out: list[str] = []
    for word in WORD.findall(text.lower()):
        pos = 0
        for m in _CJK.finditer(word):
            out.extend(_words(word[pos : m.start()]))
            run = m.group()
            out.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
            pos = m.end()
        out.extend(_words(word[pos:]))
    return out


@lru_cache(maxsize=1)
def _kiwi() -> Any:
    try:
        from kiwipiepy import Kiwi
    except ModuleNotFoundError as e:  # pragma: no cover - a core dependency
        raise MissingExtra("kiwipiepy", "core") from e
    return Kiwi()


_KIWI_LOCK = threading.Lock()


def kiwi_tokens(text: str) -> list[str]:
    """``kiwi``: Korean content morphemes from kiwipiepy; text without Hangul as ``bigram``."""
    if not _HANGUL.search(text):
        return bigram_tokens(text)
    with _KIWI_LOCK:
        morphs = _kiwi().tokenize(text)
    return _content(morphs)


def kiwi_tokens_many(texts: Sequence[str]) -> list[list[str]]:
    """:func:`kiwi_tokens` of each text, the Hangul ones analysed in one call.

    kiwipiepy spreads a batch over its worker threads (one per core), so a batch of Korean chunks costs a
    fraction of one call each.
    """
    out = [None if _HANGUL.search(t) else bigram_tokens(t) for t in texts]
    korean = [i for i, tokens in enumerate(out) if tokens is None]
    if korean:
        with _KIWI_LOCK:
            analysed = list(_kiwi().tokenize([texts[i] for i in korean]))
        for i, morphs in zip(korean, analysed, strict=True):
            out[i] = _content(morphs)
    return [tokens if tokens is not None else [] for tokens in out]


def _content(morphs: Iterable[Any]) -> list[str]:
    """Tokens of kiwipiepy morphemes: content morphemes, and each compound of adjacent ones."""
    out: list[str] = []
    run: list[Any] = []  # adjacent compound-forming morphemes with no gap between them

    def compound() -> None:
        joined = "".join(WORD.findall("".join(m.form for m in run).lower()))  # "1,000억원" -> "1000억원"
        if len(run) > 1 and joined:
            out.append(joined)
        run.clear()

    for m in morphs:
        if m.tag in _KIWI_TAGS:
            out.extend(_words(m.form) if m.tag == "SL" else WORD.findall(m.form.lower()))
        if m.tag in _KIWI_COMPOUND:
            if run and run[-1].start + run[-1].len != m.start:
                compound()
            run.append(m)
        else:
            compound()
    compound()
    return out


def hangul_fusion(tokenizer: str, query: str) -> bool:
    """Whether a query's BM25 ranking is fused from morphemes and character bigrams (``kiwi``, Hangul query)."""
    return tokenizer == "kiwi" and has_hangul(query)


def make_tokenizer(name: str) -> Tokenizer:
    """The tokeniser called ``name``; an unknown name fails listing the known ones."""
    table: dict[str, Tokenizer] = {"word": word_tokens, "bigram": bigram_tokens, "kiwi": kiwi_tokens}
    if name not in table:
        raise ConfigError(f"unknown lexical tokenizer {name!r}; known: {', '.join(TOKENIZERS)}")
    return table[name]


def make_batch_tokenizer(name: str) -> BatchTokenizer:
    """The tokeniser called ``name`` over many texts (the same tokens as :func:`make_tokenizer`'s, text by text)."""
    if name == "kiwi":
        return kiwi_tokens_many
    one = make_tokenizer(name)
    return lambda texts: [one(t) for t in texts]


def lexical_text(chunk: Chunk) -> str:
    """What the lexical index reads of a chunk: title, section and text."""
    return "\n".join(p for p in (chunk.title, chunk.section, chunk.text) if p)


def coverage(query_tokens: Sequence[str], text_tokens: Iterable[str]) -> float:
    """Share of the query's distinct tokens that occur in a text (0 for an empty query)."""
    wanted = set(query_tokens)
    if not wanted:
        return 0.0
    return len(wanted & set(text_tokens)) / len(wanted)


def has_hangul(text: str) -> bool:
    """Whether ``text`` holds any Hangul."""
    return bool(_HANGUL.search(text))


# --- the extractive answerer's sentence terms ----------------------------------------------------

# Words that ask rather than say: dropped from sentence terms on top of STOPWORDS.
QUESTION_WORDS = _wordset("tell please explain describe give show much many")
STOPWORDS_KO = _wordset(
    """
    이 그 저 것 수 등 및 또는 그리고 하지만 무엇 무엇인가요 무엇입니까 뭐 뭔가요 어떻게 어떤
    언제 어디 왜 누가 알려줘 알려주세요 있나요 있습니까 인가요 입니까 합니까 되나요 하나요 주세요
    """
)
# Bigrams of Korean verb endings and copulas: present in most sentences, meaningless for matching.
STOP_BIGRAMS = _wordset(
    """
    니다 습니 합니 입니 됩니 있습 없습 십시 세요 어요 아요 해요 나요 까요 가요 인가 는지 은지
    하는 하고 하여 해야 하면 되는 되어 에서 으로 이다 있는 없는 했다 한다 된다 이며 에는 에게
    """
)
_SENTENCE_WORD = re.compile(r"\w+", re.UNICODE)
_CJK_RUN = re.compile(r"[\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff]{2,}")
_CJK_RUN_1 = re.compile(r"[\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff]")
_NON_CJK = re.compile(r"[^\W_\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff]+")


def sentence_terms(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """Word tokens (stopwords, question words, lone digits dropped; plurals folded) and CJK bigrams of ``text``."""
    words = set()
    for raw in _SENTENCE_WORD.findall(text.lower()):
        # A word written into Korean ("cctv의", "2024년까지", "제127조"): its Latin and digit runs are words
        # of their own, since the whole never recurs as written and the bigrams below only see the Hangul.
        parts = [raw, *_NON_CJK.findall(raw)] if _CJK_RUN_1.search(raw) else [raw]
        for part in parts:
            if part in STOPWORDS or part in QUESTION_WORDS or part in STOPWORDS_KO:
                continue
            if (part.isdigit() and len(part) == 1) or (part.isascii() and len(part) < 2):
                continue
            words.add(fold(part))
    bigrams = set()
    for run in _CJK_RUN.findall(text):
        for i in range(len(run) - 1):
            bg = run[i : i + 2]
            if bg not in STOP_BIGRAMS:
                bigrams.add(bg)
    return frozenset(words), frozenset(bigrams)


def question_terms(text: str, morphemes: bool = True) -> tuple[frozenset[str], frozenset[str]]:
    """:func:`sentence_terms` of a question, its Korean bigrams limited to its content morphemes.

    With ``morphemes``, a Hangul question keeps only the bigrams that lie inside its content morphemes
    (kiwipiepy), so particles, endings and question words (``것으로``, ``얼마나``, ``예상하는가``) do not
    outweigh the nouns a sentence must share. A question whose morphemes give no bigram keeps them all.
    """
    words, bigrams = sentence_terms(text)
    if not morphemes or not has_hangul(text):
        return words, bigrams
    inside: set[str] = set()
    for token in kiwi_tokens(text):
        for run in _CJK_RUN.findall(token):
            inside.update(run[i : i + 2] for i in range(len(run) - 1))
    return words, (bigrams & inside) or bigrams

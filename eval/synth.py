"""Synthetic cases: an LLM writes a question and its answer from each sampled passage.

Passages are chunks of a corpus (SQuAD/BEIR import) or a documents folder, cut by the ingest chunker and
sampled with a seed. A generated pair is kept only if it parses, its question is not a near-duplicate of
one already kept (normalised text), and it is answerable from its passage: the answer's tokens must
occur in the passage (token F1 recall-like overlap at least ``min_support``). The passage's source is
the case's gold source. The prompt is versioned like the judge's.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eval.dataset import Case
from eval.metrics import normalize_squad
from rag.lang import detect_lang
from rag.seams import ChatBackend
from rag.types import ChatRequest, GenParams, Message

log = logging.getLogger(__name__)

PROMPT_VERSION = "synth-v1"
PROMPT = """Read the passage and write one question that it answers, and the answer in a few words
copied from the passage. The question must make sense without seeing the passage. Write in the
passage's language. Reply in exactly this form:
Q: <question>
A: <answer>

PASSAGE:
{passage}"""

_PAIR = re.compile(r"Q\s*[:：]\s*(?P<q>.+?)\s*\n+\s*A\s*[:：]\s*(?P<a>.+)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Passage:
    """A piece of text to write a question from, and the source it comes from."""

    source: str
    text: str


def parse_pair(reply: str) -> tuple[str, str] | None:
    """``(question, answer)`` from a ``Q: ... A: ...`` reply, or None."""
    match = _PAIR.search(reply)
    if not match:
        return None
    question = " ".join(match.group("q").split())
    answer = " ".join(match.group("a").strip().splitlines()[0].split()) if match.group("a").strip() else ""
    if not question or not answer or not any(c.isalnum() for c in question):
        return None
    return question, answer


def support(answer: str, passage: str) -> float:
    """Share of the answer's normalised tokens that occur in the passage."""
    tokens = normalize_squad(answer).split()
    if not tokens:
        return 0.0
    words = set(normalize_squad(passage).split())
    return sum(1 for t in tokens if t in words) / len(tokens)


async def synthesize(
    backend: ChatBackend,
    passages: Sequence[Passage],
    count: int,
    seed: int = 0,
    min_support: float = 0.8,
    progress: Callable[[int], None] | None = None,
) -> list[Case]:
    """Up to ``count`` cases from passages sampled with ``seed``; rejected pairs are logged, not kept."""
    order = list(passages)
    random.Random(seed).shuffle(order)
    seen: set[str] = set()
    cases: list[Case] = []
    params = GenParams(temperature=0.0, max_tokens=128, seed=seed)
    for n, passage in enumerate(order, 1):
        if len(cases) >= count:
            break
        request = ChatRequest(messages=(Message("user", PROMPT.format(passage=passage.text)),), params=params)
        reply = "".join([d.text async for d in backend.stream(request) if d.text])
        pair = parse_pair(reply)
        if pair is None:
            log.info("unparsed reply for %s: %r", passage.source, reply[:120])
        else:
            question, answer = pair
            key = normalize_squad(question)
            if key in seen:
                log.info("duplicate question dropped: %s", question)
            elif support(answer, passage.text) < min_support:
                log.info("unsupported answer dropped: %s -> %s", question, answer)
            else:
                seen.add(key)
                cases.append(
                    Case(
                        id=f"synth-{len(cases) + 1:04d}",
                        question=question,
                        answers=(answer,),
                        sources=(passage.source,),
                        tags=(f"synth:{PROMPT_VERSION}",),
                        lang=detect_lang(question),
                    )
                )
        if progress is not None:
            progress(n)
    return cases

"""An LLM judge of faithfulness (is the answer supported by the sources?) and relevance (does it answer?).

Any chat backend URL can judge. The prompt is versioned (:data:`PROMPT_VERSION`, recorded in every run's
``config.json``): change the wording, bump the version, since scores from two prompts do not compare.
The judge answers with two 1-5 scores; they are parsed robustly (JSON, ``name: n`` lines, ``n/5``) and
stored rescaled to 0-1 (``(s - 1) / 4``) so that every quality metric shares one axis.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.seams import ChatBackend
from rag.types import ChatRequest, GenParams, Message

log = logging.getLogger(__name__)

PROMPT_VERSION = "judge-v1"

SYSTEM = (
    "You grade answers of a question-answering system that must answer only from the given sources. "
    "Be strict and consistent. Reply with JSON only."
)

USER = """Grade the ANSWER to the QUESTION, using only the SOURCES.

faithfulness (1-5): 5 = every claim in the answer is supported by the sources; 1 = mostly unsupported or
contradicted. An answer that says the sources do not contain the answer is faithful if that is true.
relevance (1-5): 5 = directly and completely answers the question; 1 = off-topic or no answer.

QUESTION:
{question}

SOURCES:
{sources}

ANSWER:
{answer}

Reply with exactly: {{"faithfulness": <1-5>, "relevance": <1-5>}}"""

MAX_SOURCE_CHARS = 1500
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """Judge scores rescaled to 0-1 (None when the reply did not contain one), and the raw reply."""

    faithfulness: float | None
    relevance: float | None
    raw: str


def judge_messages(question: str, answer: str, sources: Sequence[str]) -> tuple[Message, ...]:
    """The judge prompt for one answer."""
    listed = "\n".join(f"[{i}] {s[:MAX_SOURCE_CHARS]}" for i, s in enumerate(sources, 1)) or "(none)"
    return (
        Message("system", SYSTEM),
        Message("user", USER.format(question=question, sources=listed, answer=answer or "(empty)")),
    )


def _rescale(value: object) -> float | None:
    try:
        score = float(str(value).strip())
    except ValueError:
        return None
    if not 1 <= score <= 5:
        return None
    return (score - 1) / 4


def _from_json(text: str) -> dict[str, float | None]:
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            lowered = {str(k).lower(): v for k, v in data.items()}
            found: dict[str, float | None] = {
                name: _rescale(lowered[name]) for name in ("faithfulness", "relevance") if name in lowered
            }
            if found:
                return found
    return {}


def _from_lines(text: str, name: str) -> float | None:
    # "Faithfulness: 4", "**relevance** - 5/5", "faithfulness score = 3"
    pattern = rf"{name[:8]}\w*\W*(?:score)?\W*([1-5](?:\.\d+)?)(?:\s*/\s*5)?"
    match = re.search(pattern, text, re.IGNORECASE)
    return _rescale(match.group(1)) if match else None


def parse_verdict(text: str) -> Verdict:
    """Scores from a judge reply: a JSON object if there is one, else ``name: n`` phrases."""
    found = _from_json(text)
    faithfulness = found.get("faithfulness") if "faithfulness" in found else _from_lines(text, "faithfulness")
    relevance = found.get("relevance") if "relevance" in found else _from_lines(text, "relevance")
    return Verdict(faithfulness=faithfulness, relevance=relevance, raw=text)


class Judge:
    """Scores answers with a chat backend and the versioned prompt."""

    version = PROMPT_VERSION

    def __init__(self, backend: ChatBackend, max_tokens: int = 64) -> None:
        self.backend = backend
        self._params = GenParams(temperature=0.0, max_tokens=max_tokens, seed=0)

    @property
    def name(self) -> str:
        """The judge backend's URL."""
        return self.backend.name

    async def grade(self, question: str, answer: str, sources: Sequence[str]) -> Verdict:
        """Ask the judge model for faithfulness and relevance of one answer."""
        request = ChatRequest(messages=judge_messages(question, answer, sources), params=self._params)
        parts = [delta.text async for delta in self.backend.stream(request) if delta.text]
        verdict = parse_verdict("".join(parts))
        if verdict.faithfulness is None or verdict.relevance is None:
            log.warning("judge reply without both scores: %r", verdict.raw[:200])
        return verdict

    async def close(self) -> None:
        """Release the backend."""
        await self.backend.close()

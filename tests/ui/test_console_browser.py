"""The web console at ``/`` in a real headless Chromium, against a real ``uvicorn`` process.

The sample handbook is ingested with the bundled MiniLM embedder and answered by the extractive
answerer, so the answers (and their citations) come from the documents, as a user would see them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.serving.conftest import RagServer, start_rag_server  # noqa: F401 - the fixture is used by name
from tests.ui.browser import chromium, chromium_missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or ""),
]

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"
QUESTION = "How quickly must a data subject's deletion request be completed?"
FOLLOW_UP = "What is the quota of a home directory on the NAS?"
WAIT_MS = 120_000  # two shared CPU cores: the first MiniLM query can take a while


@pytest.fixture(scope="module")
def server(start_rag_server: Callable[..., RagServer]) -> RagServer:  # noqa: F811 - pytest fixture injection
    """The service over the sample docs: MiniLM embeddings, extractive answers."""
    return start_rag_server(docs=DOCS, embed_url="st://all-MiniLM-L6-v2", chat_url="extractive://")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One headless Chromium for the module."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def page(browser: BrowserContext, server: RagServer) -> Iterator[Page]:
    """The console, loaded and showing the model it found on /v1/models (one conversation for the module)."""
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    page.goto(server.url + "/", wait_until="domcontentloaded")
    expect(page.locator("#model")).to_contain_text("rag · extractive", timeout=WAIT_MS)
    yield page
    page.close()
    assert not [m for m in console if "pageerror" in m], console


def ask(page: Page, text: str) -> None:
    """Type a question, press Enter and wait until the answer finished streaming."""
    before = page.locator(".msg.assistant").count()
    page.locator("#question").fill(text)
    page.locator("#question").press("Enter")
    expect(page.locator(".msg.assistant")).to_have_count(before + 1, timeout=WAIT_MS)
    # Send is disabled while streaming and enabled again when the stream ended (or failed).
    expect(page.locator("#send")).to_be_enabled(timeout=WAIT_MS)
    expect(page.locator(".msg.assistant").last).not_to_have_class(re.compile(r"\bcursor\b"), timeout=WAIT_MS)


def test_the_console_streams_an_answer_with_superscript_citations_and_its_sources(page: Page, tmp_path: Path):
    ask(page, QUESTION)
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_contain_text("14 days")
    cite = answer.locator(".text sup a").first
    expect(cite).to_have_text("[1]")
    target = cite.get_attribute("href") or ""
    assert target.startswith("#src-")
    entry = answer.locator(f"li{target}")
    expect(entry).to_contain_text("data-retention-policy.pdf")
    # A PDF source names its page, 1-based: the sentence is on page 3 of the PDF.
    expect(entry.locator(".where")).to_have_text("p. 3")
    assert not answer.locator(".error").count()
    # The question is shown as the user's bubble, and the input is free again.
    expect(page.locator(".msg.user").last).to_have_text(QUESTION)
    expect(page.locator("#question")).to_be_editable()
    cite.click()  # jumps to (and highlights) the source entry
    expect(entry).to_be_in_viewport()
    page.screenshot(path=tmp_path / "console-answer.png", full_page=True)


def test_a_follow_up_question_is_answered_in_the_same_conversation(page: Page, tmp_path: Path):
    ask(page, FOLLOW_UP)
    expect(page.locator(".msg.user")).to_have_count(2)
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_contain_text("200 GiB")
    expect(answer.locator(".sources")).to_contain_text("nas-storage-guide.md")
    # The first answer is still there with its own sources; anchors do not collide.
    first = page.locator(".msg.assistant").first
    expect(first.locator(".sources")).to_contain_text("data-retention-policy.pdf")
    assert first.locator(".sources li").first.get_attribute("id") != answer.locator(".sources li").first.get_attribute(
        "id"
    )
    page.screenshot(path=tmp_path / "console-follow-up.png", full_page=True)


def test_the_conversation_survives_a_reload_and_new_chat_clears_it(page: Page, server: RagServer):
    page.reload(wait_until="domcontentloaded")
    expect(page.locator(".msg.assistant")).to_have_count(2)
    expect(page.locator(".msg.assistant").first.locator(".text sup a").first).to_have_text("[1]")
    page.locator("#new-chat").click()
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator(".hint")).to_be_visible()


def test_a_refused_request_shows_the_service_error_message(page: Page, server: RagServer, tmp_path: Path):
    # Larger than RAG_SERVER__MAX_REQUEST_KB (512 KiB): the service answers 413 in the OpenAI envelope.
    page.locator("#question").fill("why? " * 120_000)
    page.locator("#send").click()
    error = page.locator(".msg.assistant").last.locator(".error")
    expect(error).to_be_visible(timeout=WAIT_MS)
    expect(error).to_contain_text("HTTP 413")
    expect(error).to_contain_text("KiB")
    expect(page.locator("#send")).to_be_enabled()
    page.screenshot(path=tmp_path / "console-413.png", full_page=True)


def test_an_unreachable_service_shows_a_readable_error_and_the_console_recovers(
    browser: BrowserContext,
    start_rag_server: Callable[..., RagServer],  # noqa: F811 - pytest fixture injection
    tmp_path: Path,
):
    # A server of its own (no documents, hashing embedder), so stopping it leaves the others alone.
    doomed = start_rag_server(chat_url="extractive://", embed_url="hash://")
    page = browser.new_page()
    page.goto(doomed.url + "/", wait_until="domcontentloaded")
    expect(page.locator("#model")).to_contain_text("rag", timeout=WAIT_MS)
    doomed.stop()
    ask(page, QUESTION)
    error = page.locator(".msg.assistant").last.locator(".error")
    expect(error).to_contain_text("could not reach the service")
    page.screenshot(path=tmp_path / "console-unreachable.png", full_page=True)
    page.close()

"""Real Open WebUI (its own virtualenv) wired to a real ``uvicorn`` process of the service, in Chromium.

The service answers from the sample handbook (MiniLM embeddings, extractive answers); Open WebUI
discovers the model ``rag`` from our ``/v1/models``, streams the answer and shows our ``source``
events as a source card and an inline citation chip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.serving.conftest import RagServer, free_port, start_rag_server  # noqa: F401 - fixture used by name
from tests.ui.browser import chromium, chromium_missing
from ui import openwebui

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.openwebui,
    pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or ""),
    pytest.mark.skipif(
        not (openwebui.DEFAULT_VENV / "bin" / "open-webui").is_file(),
        reason="Open WebUI is not installed: run scripts/install_openwebui.sh",
    ),
]

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"
QUESTION = "How quickly must a data subject's deletion request be completed?"
FOLLOW_UP = "What is the quota of a home directory on the NAS?"
WAIT_MS = 180_000  # Open WebUI's first page load compiles a large bundle; two shared CPU cores


@pytest.fixture(scope="module")
def server(start_rag_server: Callable[..., RagServer]) -> RagServer:  # noqa: F811 - pytest fixture injection
    """The service over the sample docs, with Open WebUI's own RAG_EMBEDDING_ENGINE in its environment.

    That variable shares our ``RAG_`` prefix; the service must start with it set (our settings
    forbid unknown fields, but the environment source ignores variables it has no field for).
    """
    return start_rag_server(
        docs=DOCS,
        embed_url="st://all-MiniLM-L6-v2",
        chat_url="extractive://",
        env={"RAG_EMBEDDING_ENGINE": "openai"},
    )


@pytest.fixture(scope="module")
def webui(server: RagServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Open WebUI on a free loopback port, using the service; yields its URL."""
    data_dir = tmp_path_factory.mktemp("open-webui")
    port = free_port()
    started = time.monotonic()
    process = openwebui.start(server.base_url, port, data_dir)
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "open-webui.log"
    try:
        try:
            openwebui.wait_healthy(url, process, timeout_s=400)
        except RuntimeError as e:
            pytest.fail(f"{e}\n--- open-webui log (tail) ---\n{log.read_text(errors='replace')[-4000:]}")
        print(f"open-webui healthy after {time.monotonic() - started:.1f}s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One headless Chromium for the module."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def open_chat(page: Page, url: str) -> None:
    """Load Open WebUI (no login: WEBUI_AUTH=false) and close the release-notes dialog of a new user."""
    page.goto(url + "/", wait_until="load", timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_be_visible(timeout=WAIT_MS)
    notes = page.get_by_role("button", name="Okay, Let's Go!")
    try:
        notes.wait_for(state="visible", timeout=10_000)
        notes.click()
    except Exception:  # the dialog is only shown once per user, and not in every version
        pass
    expect(notes).to_be_hidden()


def test_open_webui_lists_the_rag_model_discovered_from_the_service(browser: BrowserContext, webui: str):
    page = browser.new_page()
    open_chat(page, webui)
    # Open WebUI's own model list (what its selector shows) comes from our /v1/models.
    models = page.evaluate(
        """async () => {
            const r = await fetch('/api/models', {headers: {Authorization: 'Bearer ' + localStorage.token}});
            return (await r.json()).data.map((m) => [m.id, m.owned_by]);
        }"""
    )
    assert ["rag", "openai"] in models, models
    page.locator("#model-selector-model-button").click()
    page.locator("#model-search-input").fill("rag")
    option = page.locator("#model-selector-list [data-value='rag']")
    expect(option).to_be_visible()
    option.click()
    expect(page.locator("#model-selector-model-button")).to_have_text(re.compile(r"^\s*rag\s*$"))
    page.close()


def chip_name(title: str) -> re.Pattern[str]:
    """The accessible name of an inline citation chip for ``title`` (a listed card's name starts with its index)."""
    return re.compile(rf"^View source: (?!\d+ ).*{re.escape(title)}$")


def ask(page: Page, webui: str, question: str) -> Locator:
    """Ask in a new chat with the model ``rag``; returns the conversation once a source card is shown."""
    open_chat(page, webui)
    expect(page.locator("#model-selector-model-button")).to_have_text(re.compile(r"^\s*rag\s*$"))
    page.locator("#chat-input").click()
    page.keyboard.type(question)
    page.keyboard.press("Enter")
    messages = page.locator("#messages-container")
    # Our source events arrive after the text, just before the stream ends.
    expect(messages.get_by_role("button", name=re.compile(r"toggle \d+ sources?", re.I))).to_be_visible(timeout=WAIT_MS)
    return messages


def test_open_webui_streams_our_answer_and_shows_the_cited_document_as_a_source(
    browser: BrowserContext, webui: str, tmp_path: Path
):
    page = browser.new_page()
    messages = ask(page, webui, QUESTION)
    expect(messages).to_contain_text("must be completed within 14 days")
    # Our one source event becomes a "1 Source" toggle under the answer ...
    card = messages.get_by_role("button", name=re.compile(r"toggle 1 source$", re.I))
    expect(card).to_have_text(re.compile(r"1 Source"))
    # ... and the [1] marker an inline chip naming the document (no raw "[1]" left in the text).
    chip = messages.get_by_role("button", name=chip_name("Data Retention Policy"))
    expect(chip).to_have_count(1)
    assert not re.search(r"\[1\]\s*\.", messages.inner_text())
    page.screenshot(path=tmp_path / "openwebui-answer.png", full_page=True)

    # The toggle lists the document; the chip opens the cited passage.
    card.click()
    expect(messages.get_by_role("button", name=re.compile(r"^View source: 1 .*Data Retention Policy$"))).to_be_visible()
    chip.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=30_000)
    expect(dialog).to_contain_text("Data Retention Policy")
    expect(dialog).to_contain_text("A deletion request from a data subject must be completed within 14 days")
    page.screenshot(path=tmp_path / "openwebui-citation.png", full_page=True)
    page.close()


def test_open_webui_shows_the_pdf_page_the_passage_is_on(browser: BrowserContext, webui: str):
    page = browser.new_page()
    messages = ask(page, webui, QUESTION)
    messages.get_by_role("button", name=chip_name("Data Retention Policy")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("14 days", timeout=30_000)
    shown = dialog.inner_text()
    page.close()
    # "A deletion request ... within 14 days" is on page 3 of examples/docs/data-retention-policy.pdf.
    assert "(page 3)" in shown, shown


def test_open_webui_shows_a_chip_for_every_cited_passage(browser: BrowserContext, webui: str, tmp_path: Path):
    page = browser.new_page()
    # The extractive answer cites three passages of nas-storage-guide.md.
    messages = ask(page, webui, FOLLOW_UP)
    expect(messages).to_contain_text("200 GiB")
    page.screenshot(path=tmp_path / "openwebui-multi.png", full_page=True)
    chips = messages.get_by_role("button", name=chip_name("NAS and Storage Guide")).count()
    page.close()
    assert chips == 3

"""The team set-up of docs/openwebui.md, step by step, in real Open WebUI: two users, two groups, two answers.

The service is the real ``rag serve`` with an access file (Open WebUI's connection key made by
``rag keys new``, a ``users.by_user`` rule giving Alice the ``oncall`` group) and the JWT secret; Open
WebUI is started by ``python -m ui.openwebui --auth`` with forwarded, signed identity. Alice and Bob sign
in through Open WebUI's login form in Chromium; only Alice's answer cites the on-call-only document.
Restarting the launcher keeps Bob signed in (the session secret lives in the data directory).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.procs import free_port, stop
from tests.serving.conftest import Served, start_serve
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
EXAMPLES = REPO / "examples" / "docs"
RAG = str(Path(sys.executable).with_name("rag"))
QUESTION = "Whom do I call when a SEV1 incident is still open after 30 minutes, and what is the escalation order?"
RESTRICTED_TITLE = "Incident Escalation Phone Tree"
PASSWORD = "team-setup-Passw0rd!"
WAIT_MS = 180_000


@dataclass
class Team:
    """The running pair and the accounts."""

    service: Served
    webui: str
    data_dir: Path
    launch: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]


def launch(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_webui(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    try:
        openwebui.wait_healthy(url, process, timeout_s=400)
    except RuntimeError as e:
        pytest.fail(f"{e}\n--- launcher log (tail) ---\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    tmp = tmp_path_factory.mktemp("team")
    docs = tmp / "docs"
    shutil.copytree(EXAMPLES / "restricted", docs / "restricted")  # with its .rag-acl.yaml: groups [oncall]
    for name in ("oncall-runbook.md", "gpu-cluster-policy.md"):
        shutil.copy(EXAMPLES / name, docs / name)

    # Step 1: a key for Open WebUI's connection, listed in the access file with the users rules.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    made = subprocess.run(
        [RAG, "keys", "new", "open-webui", "-s", "chat", "-s", "search"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    key = made.stderr.strip().rsplit(" ", 1)[-1]
    access = tmp / "access.yaml"
    access.write_text("keys:\n" + made.stdout + 'users:\n  by_user: {"Alice@Lab.org": [oncall]}\n')
    secret = secrets.token_hex(32)

    # Step 2: the service with the access file and the JWT secret.
    service = start_serve(
        tmp,
        docs=docs,
        embed_url="st://all-MiniLM-L6-v2",
        env={"RAG_AUTH__ACCESS_FILE": str(access), "RAG_AUTH__OPENWEBUI_JWT_SECRET": secret},
    )
    # Step 3: Open WebUI with logins, signed forwarded identity and the connection key.
    port = free_port()
    data_dir = tmp / "open-webui"
    webui_env = {**env, "ENABLE_FORWARD_USER_INFO_HEADERS": "true", "FORWARD_USER_INFO_HEADER_JWT_SECRET": secret}
    cmd = [sys.executable, "-m", "ui.openwebui", "--rag-url", f"{service.url}/v1", "--port", str(port), "--auth",
           "--api-key", key, "--data-dir", str(data_dir)]  # fmt: skip
    log = tmp / "launcher.log"
    process = launch(cmd, webui_env, log)
    url = f"http://127.0.0.1:{port}"
    t = Team(service, url, data_dir, cmd, webui_env, process)
    try:
        wait_webui(url, process, log)
        # Step 4: the first sign-up is the administrator, who adds the team members.
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.post(
                "/api/v1/auths/signup", json={"name": "Admin", "email": "admin@lab.org", "password": PASSWORD}
            )
            assert r.status_code == 200, r.text
            admin = {"Authorization": f"Bearer {r.json()['token']}"}
            for name, email in (("Alice", "alice@lab.org"), ("Bob", "bob@lab.org")):
                body = {"name": name, "email": email, "password": PASSWORD, "role": "user"}
                r = client.post("/api/v1/auths/add", json=body, headers=admin)
                assert r.status_code == 200, r.text
        yield t
    finally:
        stop(t.process)
        stop(service.process)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def dismiss_notes(page: Page) -> None:
    notes = page.get_by_role("button", name="Okay, Let's Go!")
    try:
        notes.wait_for(state="visible", timeout=10_000)
        notes.click()
    except Exception:  # shown once per user, not in every version
        pass


def sign_in(page: Page, url: str, email: str) -> None:
    page.goto(url + "/auth", wait_until="load", timeout=WAIT_MS)
    sign_out(page)  # a session left from an earlier test would send the login page on to the chat
    page.goto(url + "/auth", wait_until="load", timeout=WAIT_MS)
    page.get_by_placeholder("Enter Your Email").fill(email)
    page.get_by_placeholder("Enter Your Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#chat-input")).to_be_visible(timeout=WAIT_MS)
    dismiss_notes(page)


def ask_rag(page: Page, question: str) -> str:
    """Pick the ``rag`` model (a plain user must see it), ask, and return the conversation's text."""
    page.locator("#model-selector-model-button").click()
    page.locator("#model-search-input").fill("rag")
    option = page.locator("#model-selector-list [data-value='rag']")
    expect(option).to_be_visible(timeout=60_000)
    option.click()
    page.locator("#chat-input").click()
    page.keyboard.type(question)
    page.keyboard.press("Enter")
    messages = page.locator("#messages-container")
    expect(messages.get_by_role("button", name=re.compile(r"toggle \d+ sources?", re.I))).to_be_visible(timeout=WAIT_MS)
    return messages.inner_text()


def sign_out(page: Page) -> None:
    page.evaluate("() => localStorage.removeItem('token')")


def test_two_users_with_different_groups_see_different_sources(team: Team, browser: BrowserContext) -> None:
    page = browser.new_page()
    sign_in(page, team.webui, "alice@lab.org")
    alice = ask_rag(page, QUESTION)
    assert "Kim Jiho" in alice, alice
    expect(
        page.locator("#messages-container").get_by_role("button", name=re.compile(RESTRICTED_TITLE))
    ).not_to_have_count(0)
    sign_out(page)

    sign_in(page, team.webui, "bob@lab.org")
    bob = ask_rag(page, QUESTION)
    assert "Kim Jiho" not in bob and RESTRICTED_TITLE not in bob, bob
    page.close()

    # The service's access lines name each user by e-mail: the identity came from the signed token.
    callers = {x.get("principal") for x in team.service.lines() if x["logger"] == "serving.access"}
    assert {"alice@lab.org", "bob@lab.org"} <= callers, callers


def test_a_restart_of_the_launcher_keeps_users_signed_in(team: Team, browser: BrowserContext) -> None:
    page = browser.new_page()
    sign_in(page, team.webui, "bob@lab.org")
    token = page.evaluate("() => localStorage.token")
    page.close()
    stop(team.process)
    log = team.data_dir.parent / "launcher.log"
    team.process = launch(team.launch, team.env, log)
    wait_webui(team.webui, team.process, log)
    # The session token issued before the restart is still accepted ...
    r = httpx.get(f"{team.webui}/api/v1/auths/", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200 and r.json()["email"] == "bob@lab.org", r.text
    # ... and the browser opens the chat, not the login page.
    page = browser.new_page()
    page.goto(team.webui + "/", wait_until="load", timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_be_visible(timeout=WAIT_MS)
    assert "/auth" not in page.url
    page.close()

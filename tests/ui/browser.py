"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Playwright's own browser downloads cannot be reached from our machines, so ``playwright install``
is never run; ``scripts/install_browser.sh`` installs Chromium from Debian instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags that work in containers without a GPU or a user namespace, and keep Chromium off the network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run, or None."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing: run scripts/install_browser.sh"
    return None


@contextmanager
def chromium(profile_dir: Path, **context_options: Any) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile in ``profile_dir`` (one context); closed on exit."""
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile_dir,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            timeout=120_000,
            viewport={"width": 1280, "height": 900},
            **context_options,
        )
        try:
            yield context
        finally:
            context.close()

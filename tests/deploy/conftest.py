"""Fixtures for the platform tests: the SDK virtualenv (scripts/install_deploy.sh) and the fake Kubernetes API."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.fakes.kube_api import FakeKubeAPI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_VENV = ROOT / ".venv-deploy"
DEPLOY_PYTHON = DEPLOY_VENV / "bin" / "python"
DEPLOY_RAG = DEPLOY_VENV / "bin" / "rag"

needs_deploy_venv = pytest.mark.skipif(
    not DEPLOY_RAG.is_file(), reason="the platform SDKs are not installed: run scripts/install_deploy.sh"
)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a subprocess: this checkout first on the path, a private HOME, no KUBECONFIG."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "PYTHONPATH")}
    env.update({"HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "200", "NO_COLOR": "1", **extra})
    return env


def run(argv: Sequence[str], env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root and capture its output."""
    return subprocess.run(list(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def kube_api() -> Iterator[FakeKubeAPI]:
    """A running fake Kubernetes API (HTTPS on loopback)."""
    with FakeKubeAPI() as api:
        yield api

"""helm, installed once per session by scripts/install_helm.sh; renders shared by the chart tests.

If helm cannot be installed these tests fail, never skip.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.charts.render import PROFILES, ROOT, Doc, template


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of the helm binary."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_helm.sh")], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/install_helm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    path = ROOT / proc.stdout.strip().splitlines()[-1]
    assert path.is_file(), f"install_helm.sh printed {path}, which does not exist"
    return str(path)


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, list[Doc]]:
    """Each profile rendered once as release t in namespace rag-test."""
    return {name: template(helm, *args) for name, args in PROFILES.items()}


@pytest.fixture(scope="session")
def default_docs(rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered["default"]


@pytest.fixture(scope="session")
def all_docs(rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered["all"]

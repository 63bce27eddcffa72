"""The checked-in YAML under deploy/ is what the SDKs render from deploy/*.py today (``make pipelines``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.deploy.conftest import DEPLOY_PYTHON, clean_env, needs_deploy_venv, run
from tests.deploy.manifests import DEPLOY, RENDERED


def render(tmp_path: Path, *args: str):
    return run([str(DEPLOY_PYTHON), "-m", "deploy.render", *args], clean_env(tmp_path), timeout_s=300)


@needs_deploy_venv
def test_checked_in_yaml_matches_a_fresh_render(tmp_path: Path):
    r = render(tmp_path, "--check")
    assert r.returncode == 0, f"run `make pipelines` and commit deploy/:\n{r.stderr}"


@needs_deploy_venv
def test_the_check_names_a_stale_or_missing_file_and_a_render_writes_them_all(tmp_path: Path):
    out = tmp_path / "out"
    for path in RENDERED:
        target = out / path.relative_to(DEPLOY)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (out / "argo" / "cronworkflow.yaml").write_text((out / "argo" / "cronworkflow.yaml").read_text() + "# edited\n")
    (out / "katib" / "experiment.yaml").unlink()
    r = render(tmp_path, "--check", "--out", str(out))
    assert r.returncode == 1
    assert "deploy/argo/cronworkflow.yaml" in r.stderr and "deploy/katib/experiment.yaml" in r.stderr
    assert "workflowtemplate.yaml" not in r.stderr and "pipeline.yaml" not in r.stderr
    r = render(tmp_path, "--out", str(out), "--image", "harbor.example/rag/onprem-rag:1.2.3")
    assert r.returncode == 0, r.stderr
    assert all((out / p.relative_to(DEPLOY)).is_file() for p in RENDERED)
    for name in ("kubeflow/pipeline.yaml", "katib/experiment.yaml", "argo/workflowtemplate.yaml"):
        assert "harbor.example/rag/onprem-rag:1.2.3" in (out / name).read_text()

"""The Containerfile and the scripts that build and test the image, checked without building it.

Building the image takes minutes (`make image-test` does it and runs the result); these checks run in
every test run: the Containerfile's invariants (non-root numeric user, base image and torch as build
arguments, no `latest`, no secrets, an environment that is valid configuration for a read-only pod), its
agreement with the chart and pyproject.toml, and `bash -n` plus shellcheck (Debian's, installed by
scripts/install_shellcheck.sh; the test fails, never skips, when it cannot be installed) on every script
the Makefile targets and the Containerfile run.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from rag.config import load
from rag.registry import parse_url
from rag.stores.common import local_path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
CHART = ROOT / "charts" / "onprem-rag"
UID = 10001
SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "AUTH"}


def parse() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(CONTAINERFILE.read_bytes()))


def instructions() -> list[dict[str, Any]]:
    return [i for i in parse().structure if i["instruction"] != "COMMENT"]


def stages() -> list[list[dict[str, Any]]]:
    """The instructions of each stage, FROM first; a stage-0 list holds the global ARGs."""
    out: list[list[dict[str, Any]]] = [[]]
    for ins in instructions():
        if ins["instruction"] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def final_stage() -> list[dict[str, Any]]:
    return stages()[-1]


def values(ins: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in ins if i["instruction"] == name]


def arg_defaults(ins: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for value in values(ins, "ARG"):
        name, _, default = value.partition("=")
        out[name] = default.strip('"')
    return out


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def chart_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def image_env() -> dict[str, str]:
    env: dict[str, str] = parse().envs
    return env


# --- the image itself ----------------------------------------------------------------------------


def test_final_stage_runs_as_the_numeric_uid_and_gid_the_chart_expects() -> None:
    users = values(final_stage(), "USER")
    assert users, "the final stage sets no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {users[-1]} is not numeric"
    pod = chart_values()["podSecurityContext"]
    assert int(uid) == UID == pod["runAsUser"]
    assert int(gid or uid) == pod["runAsGroup"]
    assert pod["runAsNonRoot"] is True


def test_every_stage_starts_from_the_base_image_argument_or_an_earlier_stage() -> None:
    global_args = arg_defaults(stages()[0])
    assert "BASE_IMAGE" in global_args, "BASE_IMAGE must be an ARG before the first FROM"
    names: list[str] = []
    for stage in stages()[1:]:
        image, _, name = stage[0]["value"].partition(" AS ")
        assert image == "${BASE_IMAGE}" or image in names, f"FROM {image}: neither ${{BASE_IMAGE}} nor a stage"
        if name:
            names.append(name.strip())


def test_torch_and_its_index_are_build_arguments_defaulting_to_the_cpu_build() -> None:
    args: dict[str, str] = {}
    for stage in stages():
        args.update(arg_defaults(stage))
    assert args["TORCH_SPEC"] == "torch==2.13.0"
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert args["TORCH_BUILD"] == "cpu"
    assert args["INSTALL_FROM"] in ("index", "wheelhouse")


def test_no_image_is_referenced_by_the_latest_tag_or_without_a_tag() -> None:
    base = arg_defaults(stages()[0])["BASE_IMAGE"]
    name, _, tag = base.rpartition(":")
    assert name and "/" not in tag and tag not in ("", "latest"), f"BASE_IMAGE default {base} has no fixed tag"
    texts = [CONTAINERFILE, *image_scripts(), ROOT / "Makefile"]
    for path in texts:
        assert not re.search(r":latest\b", path.read_text()), f"{path.name} names a :latest image"


def test_no_secret_is_baked_into_arguments_environment_or_labels() -> None:
    ins = instructions()
    named: dict[str, str] = dict(image_env())
    for stage in stages():
        named.update(arg_defaults(stage))
    named.update(parse().labels)
    leaked = {k: v for k, v in named.items() if v and SECRET_WORDS & set(re.split(r"[_.\-]+", k.upper()))}
    assert not leaked, f"secret-looking names with values in the image: {leaked}"
    for i in ins:
        if i["instruction"] in ("ARG", "ENV"):
            assert "API_KEY" not in i["value"].upper(), f"{i['instruction']} {i['value']}: keys come from Secrets"


def test_there_is_no_healthcheck_because_worker_and_eval_jobs_serve_no_http() -> None:
    # One image runs `rag serve`, `rag worker` and `rag eval`; a HEALTHCHECK on /healthz would mark the
    # jobs unhealthy. The chart's startup/liveness/readiness probes check the service instead.
    assert not values(instructions(), "HEALTHCHECK")
    probes = (CHART / "templates" / "deployment.yaml").read_text()
    assert "path: /healthz" in probes and "path: /readyz" in probes


def test_entry_point_is_the_rag_cli_and_the_default_command_serves() -> None:
    stage = final_stage()
    assert json.loads(values(stage, "ENTRYPOINT")[-1]) == ["rag"]
    assert json.loads(values(stage, "CMD")[-1]) == ["serve"]
    assert "rag" in pyproject()["project"]["scripts"]
    assert "8000" in values(stage, "EXPOSE")[-1].split()
    assert chart_values()["config"]["server"]["port"] == 8000


def test_image_environment_is_valid_configuration_for_a_read_only_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    env = image_env()
    for name in [n for n in os.environ if n.startswith("RAG_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("RAG_"):
            monkeypatch.setenv(name, value)
    settings = load()
    data_dir = Path(env["RAG_DATA_DIR"])
    assert settings.data_dir == data_dir == Path(chart_values()["config"]["data_dir"])
    # The embedded store must live on the data volume: everything else is read-only.
    store = local_path(parse_url(settings.store.url), settings.data_dir)
    assert store.is_absolute() and data_dir in store.parents, f"{settings.store.url} is outside {data_dir}"
    assert settings.server.host == "0.0.0.0", "the service must bind every interface in a container"
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HF_HOME", "MPLCONFIGDIR"):
        assert Path(env[name]) == Path("/tmp") or Path("/tmp") in Path(env[name]).parents, f"{name} not in /tmp"
    assert env["HF_HUB_OFFLINE"] == "1", "the bundled model loads from the image, never from a hub"
    assert env["ANONYMIZED_TELEMETRY"] == "False"
    runs_as = final_stage()
    setup = " ".join(values(runs_as, "RUN"))
    assert f"chown {UID}:{UID} {data_dir}" in setup, "the data dir must belong to the image's user"
    assert values(runs_as, "WORKDIR")[-1] == str(data_dir)


def test_labels_carry_the_version_of_pyproject_and_the_chart() -> None:
    labels = parse().labels
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert prefix + key in labels, f"label {prefix}{key} missing"
    version = pyproject()["project"]["version"]
    assert labels[prefix + "version"] == version
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version
    assert labels[prefix + "licenses"] == pyproject()["project"]["license"]


# --- the build context -----------------------------------------------------------------------------


def copy_sources() -> list[str]:
    """Paths the Containerfile copies from the build context (not from another stage)."""
    out = []
    for value in values(instructions(), "COPY"):
        words = value.split()
        if any(w.startswith("--from=") for w in words):
            continue
        out.extend(w for w in words[:-1] if not w.startswith("--"))
    return out


def test_build_context_is_an_allow_list_of_exactly_what_the_containerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore must exclude everything first (no .git, virtualenvs, keys)"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {src.rstrip("/") for src in copy_sources()}
    assert allowed == copied, f"allowed but not copied: {allowed - copied}; copied but excluded: {copied - allowed}"
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"


def test_every_package_of_the_project_is_copied_into_the_image() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {src.rstrip("/") for src in copy_sources()}
    assert packages <= copied, f"packages the image would lack: {sorted(packages - copied)}"


def test_wheelhouse_folder_is_in_the_repository_but_its_wheels_are_not() -> None:
    folder = ROOT / "wheelhouse"
    assert (folder / "README.md").is_file()
    ignore = (folder / ".gitignore").read_text().split()
    assert "*" in ignore and "!README.md" in ignore and "!.gitignore" in ignore


# --- the scripts -----------------------------------------------------------------------------------


def make_recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    m = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n?)+)", text, re.M)
    assert m, f"Makefile has no target {target}"
    return m.group(1)


def image_scripts() -> list[Path]:
    """Scripts `make image`, `make image-test` and the Containerfile run, and those they call, transitively."""
    pattern = re.compile(r"scripts/[\w.-]+\.sh")
    todo = pattern.findall(make_recipe("image") + make_recipe("image-test") + CONTAINERFILE.read_text())
    seen: dict[str, Path] = {}
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        path = ROOT / rel
        assert path.is_file(), f"{rel} is named but does not exist"
        seen[rel] = path
        todo.extend(pattern.findall(path.read_text()))
    return sorted(seen.values())


def test_make_targets_build_and_test_the_image_through_the_scripts() -> None:
    names = {p.name for p in image_scripts()}
    assert {"image.sh", "image_test.sh", "wheelhouse.sh", "image_install.sh", "image_base.sh"} <= names


@pytest.fixture(scope="module")
def shellcheck() -> str:
    """Debian's shellcheck, installed by scripts/install_shellcheck.sh when missing."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_shellcheck.sh")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/install_shellcheck.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def test_image_scripts_parse_and_pass_shellcheck(shellcheck: str) -> None:
    scripts = image_scripts()
    for path in scripts:
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"bash -n {path.name}: {proc.stderr}"
        if path.name != "image_lib.sh":  # sourced, not run: shellcheck reads it through its callers too
            assert path.stat().st_mode & 0o111, f"{path.name} is not executable"
    proc = subprocess.run(
        [shellcheck, "--external-sources", *(str(p.relative_to(ROOT)) for p in scripts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""The Open WebUI launcher's environment: a session secret that survives restarts, the model shown to every user."""

from __future__ import annotations

import stat
from pathlib import Path

from ui import openwebui


def test_the_session_secret_is_made_once_in_the_data_dir_and_kept_across_restarts(tmp_path: Path) -> None:
    first = openwebui.openwebui_env("http://127.0.0.1:8000/v1", tmp_path / "a", base={})
    again = openwebui.openwebui_env("http://127.0.0.1:8000/v1", tmp_path / "a", base={})
    other = openwebui.openwebui_env("http://127.0.0.1:8000/v1", tmp_path / "b", base={})
    assert first["WEBUI_SECRET_KEY"] == again["WEBUI_SECRET_KEY"] != other["WEBUI_SECRET_KEY"]
    assert len(first["WEBUI_SECRET_KEY"]) >= 32
    secret_file = tmp_path / "a" / openwebui.SECRET_FILE
    assert secret_file.read_text().strip() == first["WEBUI_SECRET_KEY"]
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_a_secret_given_in_the_environment_wins_and_nothing_is_written(tmp_path: Path) -> None:
    env = openwebui.openwebui_env("http://x/v1", tmp_path, base={"WEBUI_SECRET_KEY": "from-the-operator"})
    assert env["WEBUI_SECRET_KEY"] == "from-the-operator"
    assert not (tmp_path / openwebui.SECRET_FILE).exists()


def test_every_user_sees_the_model_and_our_settings_stay_out_of_its_environment(tmp_path: Path) -> None:
    env = openwebui.openwebui_env("http://x/v1/", tmp_path, base={"RAG_AUTH__OPENWEBUI_JWT_SECRET": "s", "A": "1"})
    assert env["BYPASS_MODEL_ACCESS_CONTROL"] == "true"
    assert env["OPENAI_API_BASE_URL"] == "http://x/v1" and env["A"] == "1"
    assert not any(k.startswith("RAG_") and k != "RAG_EMBEDDING_ENGINE" for k in env)

import pytest

from rag.config import load
from rag.errors import ConfigError


def test_defaults_are_the_embedded_offline_setup(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)
    s = load()
    assert s.store.url.startswith("chroma://")
    assert s.embed.url == "st://all-MiniLM-L6-v2"
    assert s.chat.url == "auto"
    assert s.server.host == "127.0.0.1"


def test_nested_environment_variables_override_defaults(monkeypatch):
    monkeypatch.setenv("RAG_STORE__URL", "milvus+lite:///tmp/x.db")
    monkeypatch.setenv("RAG_RETRIEVAL__K", "9")
    s = load()
    assert s.store.url == "milvus+lite:///tmp/x.db"
    assert s.retrieval.k == 9


def test_yaml_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    cfg = tmp_path / "rag.yaml"
    cfg.write_text("store:\n  collection: handbook\nretrieval:\n  k: 3\n")
    monkeypatch.setenv("RAG_RETRIEVAL__K", "7")
    s = load(cfg)
    assert s.store.collection == "handbook"
    assert s.retrieval.k == 7


def test_unknown_scheme_fails_at_start_up_listing_known_ones(monkeypatch):
    monkeypatch.setenv("RAG_STORE__URL", "postgres://db/x")
    with pytest.raises(ConfigError) as e:
        load()
    assert "unknown vector store scheme 'postgres'" in e.value.message
    assert "milvus+lite" in e.value.message and "chroma" in e.value.message


def test_invalid_value_names_the_environment_variable(monkeypatch):
    monkeypatch.setenv("RAG_RETRIEVAL__K", "zero")
    with pytest.raises(ConfigError) as e:
        load()
    assert "RAG_RETRIEVAL__K" in e.value.message


def test_credentials_in_a_backend_url_are_refused(monkeypatch):
    monkeypatch.setenv("RAG_CHAT__URL", "openai+http://user:secret@host/v1?model=x")
    with pytest.raises(ConfigError) as e:
        load()
    assert "secret" not in e.value.message


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.yaml")


def test_unknown_setting_in_yaml_is_rejected(tmp_path):
    cfg = tmp_path / "rag.yaml"
    cfg.write_text("stroe:\n  url: memory://\n")
    with pytest.raises(ConfigError, match="STROE"):
        load(cfg)

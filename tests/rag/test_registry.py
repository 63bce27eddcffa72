import sys

import pytest

from rag.config import load
from rag.errors import ConfigError, MissingExtra
from rag.registry import CHATS, EMBEDDERS, STORES, make_chat, make_embedder, make_store, parse_url


def test_parse_url_keeps_host_port_path_and_query():
    u = parse_url("kserve+http://llm.models.svc:8080/openai/v1?model=qwen&dim=3")
    assert (u.scheme, u.host, u.port, u.path) == ("kserve+http", "llm.models.svc", 8080, "/openai/v1")
    assert u.query == {"model": "qwen", "dim": "3"}
    assert u.http_base() == "http://llm.models.svc:8080/openai/v1"


def test_a_url_without_scheme_is_refused():
    with pytest.raises(ConfigError, match="needs a scheme"):
        parse_url("/var/lib/rag")


@pytest.mark.parametrize(
    ("factory", "section", "table"),
    [(make_store, "store", STORES), (make_embedder, "embed", EMBEDDERS), (make_chat, "chat", CHATS)],
)
def test_each_seam_refuses_an_unknown_scheme_listing_its_own_schemes(factory, section, table):
    settings = load()
    broken = settings.model_copy(update={section: getattr(settings, section).model_copy(update={"url": "nope://x"})})
    with pytest.raises(ConfigError) as e:
        factory(broken)
    for scheme in table:
        assert scheme in e.value.message


def test_a_missing_optional_sdk_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "chromadb", None)  # as if the 'chroma' extra were not installed
    monkeypatch.delitem(sys.modules, "rag.stores.chroma", raising=False)
    with pytest.raises(MissingExtra) as e:
        make_store(load(store={"url": "chroma:///tmp/x"}))
    assert "pip install 'onprem-rag[chroma]'" in e.value.message


def test_auto_with_a_model_is_accepted_at_start_up(monkeypatch):
    monkeypatch.setenv("RAG_CHAT__URL", "auto?model=llama3.2")
    assert load().chat.url == "auto?model=llama3.2"

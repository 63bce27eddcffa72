"""Configuration: one pydantic-settings root, ``RAG_`` prefix, nested sections (``RAG_STORE__URL``).

Built only at entry points (the app factory, the worker main, the CLI callback) and passed down.
An optional YAML file (``RAG_CONFIG_FILE`` or ``--config``) supplies values below the environment.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rag.errors import ConfigError


class StoreSettings(BaseModel):
    """Where chunks and vectors live."""

    url: str = Field(
        "chroma://",
        description="Vector store URL; the scheme picks the backend. A bare chroma:// or milvus+lite:// is "
        "data_dir/chroma or data_dir/milvus.db; a written path is absolute (chroma:///srv/chroma) or relative "
        "to the working directory.",
    )
    collection: str = Field("docs", description="Collection name (Chroma: 3-512 chars of [a-zA-Z0-9._-]).")
    api_key: SecretStr | None = Field(None, description="Token for a store server that needs one (Milvus).")
    timeout_s: float = Field(10.0, description="Connect/request timeout for store servers, seconds.")
    lexical_check_s: float = Field(
        10.0,
        ge=0,
        description="Chroma server: how often at most a lexical search checks the collection's change marker "
        "(set by every writer) and, when it moved, reconciles this process's BM25 index by chunk id, seconds.",
    )


class EmbedSettings(BaseModel):
    """How text becomes vectors."""

    url: str = Field("st://all-MiniLM-L6-v2", description="Embedder URL; the scheme picks the backend.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding call.")
    batch_tokens: int = Field(
        2048,
        ge=0,
        description="Ingestion: most padded tokens per embedding call (texts × the longest one's tokens), so "
        "long chunks go in smaller batches and short ones are not padded to them; 0 = batch_size only.",
    )
    backend: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Inference backend of st:// embedders: 'auto' = the fastest this machine supports (bf16 "
        "autocast with native CPU bf16 or a GPU, else ONNX, else fp32), checked once against fp32 on a probe "
        "batch (cached in data_dir/models) and following the precision an existing collection was built with; "
        "or explicitly torch fp32, torch-bf16, onnx, onnx-int8 (int8 weights).",
    )
    query_prefix: str = Field("", description="Prepended to queries (e.g. 'query: ' for e5 models).")
    document_prefix: str = Field("", description="Prepended to passages (e.g. 'passage: ' for e5).")
    api_key: SecretStr | None = Field(None, description="Key for a remote embedding endpoint.")
    timeout_s: float = Field(60.0, description="Request timeout for remote embedders, seconds.")


class ChatSettings(BaseModel):
    """How answers are generated."""

    url: str = Field(
        "auto",
        description="Chat backend URL; 'auto' = Ollama on localhost:11434 if it answers, else extractive.",
    )
    api_key: SecretStr | None = Field(None, description="Key for the chat endpoint (OpenAI, KServe).")
    timeout_s: float = Field(120.0, description="Per-request timeout toward the chat backend, seconds.")
    max_tokens: int = Field(512, ge=1, description="Default answer length limit, tokens.")
    temperature: float = Field(0.1, ge=0.0, le=2.0, description="Default sampling temperature.")


class RetrievalSettings(BaseModel):
    """How chunks are found (hybrid dense + BM25), fused, gated, and assembled into sources."""

    k: int = Field(5, ge=1, le=100, description="Sources given to the generator.")
    min_score: float = Field(
        0.3,
        description="Dense similarity a chunk needs to count as relevant (or lexical coverage, below); "
        "nothing relevant = 'no answer'. Tuned on the dev halves of the refusal benchmark (XQuAD, HotpotQA, "
        "Allganize questions against their own and each other's corpora, MiniLM).",
    )
    mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="Retrievers used: dense + BM25 fused by weighted RRF, or one of them alone."
    )
    tokenizer: Literal["word", "bigram", "kiwi"] = Field(
        "kiwi",
        description="BM25 tokeniser: word tokens; + Hangul character bigrams; or + Korean morphemes (kiwipiepy).",
    )
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in reciprocal rank fusion.")
    lexical_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in reciprocal rank fusion.")
    rrf_k: int = Field(5, ge=1, description="RRF constant: score = sum of weight / (rrf_k + rank).")
    title_match_weight: float = Field(
        1.0, ge=0, description="RRF weight of candidates whose title the query names (0 = off)."
    )
    title_link_weight: float = Field(
        1.0,
        ge=0,
        description="RRF weight of candidates whose title the best chunks' text names (multi-hop links; 0 = off).",
    )
    title_link_top: int = Field(3, ge=0, le=20, description="Best fused chunks whose text is searched for titles.")
    candidates: int = Field(50, ge=1, le=1000, description="Candidates each retriever returns before fusion.")
    dense_languages: list[str] = Field(
        default_factory=list,
        description="Query languages the embedder handles ('*' = all); empty = known from the embedder id "
        "(MiniLM: en; e5/bge-m3 multilingual). Other languages are searched lexically only.",
    )
    min_lexical_coverage: float = Field(
        0.55,
        ge=0,
        le=1,
        description="Share of the query's terms a chunk must contain to count as relevant when its dense "
        "similarity is below min_score. Tuned with min_score on the refusal benchmark's dev halves.",
    )
    min_lexical_coverage_alone: float = Field(
        0.3,
        ge=0,
        le=1,
        description="The same share for a query searched by BM25 alone (a language the embedder cannot read, "
        "e.g. Korean with MiniLM; or mode=lexical), where coverage is the only test. Tuned on the refusal "
        "benchmark's dev halves (Korean).",
    )
    max_context_tokens: int = Field(
        3000, ge=100, description="Token budget of the sources put in the prompt (estimated from characters)."
    )
    dedupe_threshold: float = Field(
        0.8, gt=0, le=1, description="Chunks this similar (term Jaccard) to a better one are dropped."
    )
    mmr_lambda: float = Field(
        1.0, ge=0, le=1, description="MMR relevance/diversity trade-off for source selection; 1 = off."
    )
    max_chunks_per_source: int = Field(
        3,
        ge=0,
        le=100,
        description="Most chunks of one document among the k sources while other documents also match "
        "(relaxed to fill k when few do; 0 = no cap).",
    )
    neighbors: int = Field(0, ge=0, le=3, description="Adjacent chunks of the same document added to each source.")
    rerank_url: str = Field(
        "",
        description="Optional reranker: st:///path/cross-encoder (local model) or http(s)://host/rerank "
        "(TEI/KServe); empty = none.",
    )
    rerank_candidates: int = Field(20, ge=1, le=200, description="Fused candidates the reranker re-scores.")


class IngestSettings(BaseModel):
    """How documents become chunks."""

    chunk_size: int = Field(300, ge=32, le=8192, description="Target chunk size, tokens of the embedder.")
    chunk_overlap: int = Field(40, ge=0, le=2048, description="Overlap between chunks, tokens.")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are refused, MiB.")
    max_unpacked_mb: float = Field(
        256.0,
        gt=0,
        description="Most bytes an Office or HWPX package (DOCX/PPTX/XLSX/HWPX) or the streams of an HWP file may "
        "unpack to, all together, and a PDF stream may inflate to, MiB; checked before the parser reads it.",
    )
    max_zip_ratio: float = Field(
        100.0,
        gt=1,
        description="Highest compression ratio of an Office/HWPX package member or HWP stream over 1 MiB "
        "(zip-bomb check).",
    )
    max_text_mb: float = Field(20.0, gt=0, description="Most text one document may yield (UTF-8), MiB.")
    parse_timeout_s: float = Field(
        300.0, gt=0, description="Longest one document may take to parse; the parser process is then stopped, seconds."
    )
    parse_memory_mb: float = Field(
        1024.0, ge=64, description="Data memory cap of the parser process (RLIMIT_DATA), MiB."
    )
    ocr: Literal["auto", "off"] = Field(
        "auto",
        description="OCR of scanned PDF pages and of PNG/JPEG/TIFF images with Tesseract: auto = wherever a file "
        "needs it, when tesseract is installed (scripts/install_ocr.sh; else such files are skipped and reported), "
        "off = never.",
    )
    ocr_languages: str = Field(
        "Hangul",
        pattern=r"^[A-Za-z0-9_/-]+(\+[A-Za-z0-9_/-]+)*$",
        description="Tesseract languages or scripts, joined by '+': Hangul (the script model, Korean and Latin "
        "text; package tesseract-ocr-script-hang) reads mixed Korean/English pages best; kor+eng is the alternative.",
    )
    ocr_dpi: int = Field(300, ge=72, le=1200, description="Resolution scanned PDF pages are rendered at for OCR.")
    ocr_min_chars: int = Field(
        20,
        ge=0,
        description="A PDF page with an image and fewer characters of text layer than this (spaces not counted) "
        "is OCR'd.",
    )
    default_groups: list[str] = Field(
        default_factory=lambda: ["public"], description="ACL groups of documents no rule labels."
    )
    include: list[str] = Field(default_factory=list, description="Glob patterns to include (empty = all).")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns to skip.")
    follow_links: Literal["target-acl", "skip"] = Field(
        "target-acl",
        description="Symbolic links to files inside a folder source: read under the ACL of the target's folder "
        "(target-acl) or skip them; links leading out of the source are always refused.",
    )
    s3_endpoint_url: str = Field(
        "", description="S3-compatible endpoint for s3:// sources (MinIO: http://minio:9000); empty = AWS."
    )
    s3_region: str = Field("us-east-1", description="Region for s3:// sources.")
    s3_access_key_id: SecretStr | None = Field(None, description="Access key for s3:// sources (else boto3's chain).")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret key for s3:// sources.")
    s3_acl_tag: str = Field(
        "rag-groups", description="Object tag whose space-separated value gives an S3 document's ACL groups."
    )


class ProfileSettings(BaseModel):
    """One more model on /v1/models: a collection answered through its own chat backend chain.

    Unset fields take the top-level value (store.collection, chat.url, chain.fallback_urls,
    chain.restricted_to_public); the top-level settings are the default profile, server.model_name.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Model id advertised on /v1/models and chosen by a request's 'model'.")
    collection: str | None = None
    chat_url: str | None = None
    fallback_urls: list[str] | None = None
    restricted_to_public: bool | None = None


class ServerSettings(BaseModel):
    """The HTTP service."""

    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=0, le=65535, description="Bind port.")
    model_name: str = Field("rag", description="Model id advertised on /v1/models.")
    max_request_kb: int = Field(512, ge=1, description="Largest accepted request body, KiB.")
    max_header_kb: int = Field(
        32, ge=1, le=1024, description="Largest accepted request head (request line and headers), KiB; more is 431."
    )
    max_headers: int = Field(100, ge=8, le=1000, description="Most header fields in one request; more is 431.")
    profiles: list[ProfileSettings] = Field(
        default_factory=list,
        description="More models (RAG profiles) on /v1/models: a JSON list of {name, collection, chat_url, "
        "fallback_urls, restricted_to_public}; unset fields take the top-level settings.",
    )

    @field_validator("model_name")
    @classmethod
    def _model_name_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    @model_validator(mode="after")
    def _profile_names_unique(self) -> ServerSettings:
        names = [self.model_name, *(p.name for p in self.profiles)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"profile names must differ from each other and from model_name: {', '.join(repeated)}")
        return self


class AuthSettings(BaseModel):
    """Who may call the service and which documents each caller may read."""

    required: bool = Field(
        False, description="Refuse callers without credentials (401); false = anonymous callers read 'public' only."
    )
    access_file: Path | None = Field(
        None, description="YAML/JSON file of hashed API keys and user-to-group rules (see serving/identity.py)."
    )
    openwebui_jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret shared with Open WebUI; verifies its X-OpenWebUI-User-Jwt header."
    )
    trust_openwebui_headers: bool = Field(
        False, description="Trust plain X-OpenWebUI-User-* headers (forgeable: only behind a trusted proxy)."
    )

    @field_validator("access_file", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v


class LimitsSettings(BaseModel):
    """What one request and one caller may ask of the service."""

    max_messages: int = Field(200, ge=1, description="Most messages in one chat request.")
    max_input_tokens: int = Field(32000, ge=1, description="Most input tokens (estimated) in one chat request.")
    rate_per_minute: int = Field(0, ge=0, description="Requests per minute per caller (key or user); 0 = unlimited.")
    request_timeout_s: float = Field(300.0, gt=0, description="Longest a request may take, streaming included.")
    backend_concurrency: int = Field(32, ge=1, description="Most generations in flight per chat backend.")


class ChainSettings(BaseModel):
    """Fallback chat backends tried, in order, after chat.url fails before its first token."""

    fallback_urls: list[str] = Field(default_factory=list, description="Chat backend URLs tried after chat.url.")
    retries: int = Field(1, ge=0, le=10, description="Extra attempts per backend before moving on.")
    backoff_s: float = Field(0.2, ge=0, description="Wait before a retry (doubles each time), seconds.")
    first_token_timeout_s: float = Field(
        60.0, gt=0, description="A backend that sends nothing for this long fails over, seconds."
    )
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures that open a backend's circuit breaker.")
    breaker_reset_s: float = Field(30.0, gt=0, description="How long an open breaker skips its backend, seconds.")
    probe_interval_s: float = Field(15.0, ge=0, description="Health probe period per backend, seconds; 0 = none.")
    restricted_to_public: bool = Field(
        False, description="Allow answers from non-public documents to go to public endpoints (openai://)."
    )
    public_url_prefixes: list[str] = Field(
        default_factory=lambda: ["openai://"],
        description="Chat backend URLs (by prefix) outside the organisation: restricted documents never go there.",
    )


class TelemetrySettings(BaseModel):
    """Logs and metrics."""

    log_format: Literal["json", "text"] = Field("json", description="Service log lines: one JSON object or text.")
    metrics: bool = Field(True, description="Serve Prometheus metrics on /metrics.")


class Settings(BaseSettings):
    """The root of all configuration."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        Path(".rag"),
        description="Local state: the default embedded stores, sync state, lexical indexes, model caches "
        "(relative = to the working directory).",
    )
    log_level: str = Field("INFO", description="Python log level.")
    store: StoreSettings = Field(default_factory=StoreSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order: explicit arguments, environment, then the YAML file named by ``_yaml_file``."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _YAML_FILE.get("path")
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


# The YAML path is handed to settings_customise_sources for the duration of one load() call.
_YAML_FILE: dict[str, Path | None] = {"path": None}


def load(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings; every problem becomes one ConfigError.

    Args:
        config_file: optional YAML file; ``RAG_CONFIG_FILE`` names one when this is not given.
        overrides: explicit values that win over everything else (CLI flags).
    """
    path = config_file or os.environ.get("RAG_CONFIG_FILE")
    if path and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    _YAML_FILE["path"] = Path(path) if path else None
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        raise ConfigError("invalid configuration:\n" + _format_errors(e)) from e
    finally:
        _YAML_FILE["path"] = None
    from rag.registry import validate_urls

    validate_urls(settings)
    return settings


@dataclass(frozen=True)
class Overrides:
    """Settings given on a command line: a config file, and values that win over it and the environment.

    ``values`` is nested like :class:`Settings` (``{"store": {"url": ...}}``). The ``rag`` command builds
    one from its global options; each command adds its own and loads the settings once.
    """

    config_file: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def merged(self, **more: Any) -> Overrides:
        """A copy with more values (nested dicts merged; ``None`` values are left out)."""
        values = copy.deepcopy(self.values)
        _merge(values, more)
        return Overrides(self.config_file, values)

    def load(self, **more: Any) -> Settings:
        """The validated settings with these values (and ``more``) on top."""
        return load(self.config_file, **self.merged(**more).values)


def set_library_environment(**values: str) -> None:
    """Give a third-party library the environment it reads (``HF_HUB_OFFLINE``, ...) unless the user set it."""
    for key, value in values.items():
        os.environ.setdefault(key, value)


def eval_service_api_key() -> str | None:
    """``RAG_EVAL_SERVICE_API_KEY``: the key the eval CLI sends to a running service target."""
    return os.environ.get("RAG_EVAL_SERVICE_API_KEY")


def cli_log_level(verbose: bool) -> str:
    """Log level of a command-line run: DEBUG with ``-v``, else ``RAG_LOG_LEVEL`` if set, else WARNING (quiet)."""
    return "DEBUG" if verbose else os.environ.get("RAG_LOG_LEVEL", "WARNING")


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, dict):
            into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value


def _format_errors(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = "__".join(str(p) for p in err["loc"]).upper()
        lines.append(f"  RAG_{loc}: {err['msg']}")
    return "\n".join(lines)

"""What each chat backend does with each OpenAI chat parameter: the table ``docs/service.md`` shows.

The rows for optional features (``response_format``, ``tools``, ``logprobs``) are computed from the
adapters' own ``features``, so the table cannot claim a pass-through the code does not do;
``tests/clients/test_params_table.py`` checks that the docs carry this table as rendered here.
"""

from __future__ import annotations

from rag.chat.ollama import FEATURES as OLLAMA_FEATURES
from rag.chat.openai import ALL_FEATURES as OPENAI_FEATURES

# Column, and the optional features the backend honours by default.
BACKENDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("`openai://`, `openai+http://`, `kserve+http://`", OPENAI_FEATURES),
    ("`ollama://`", OLLAMA_FEATURES),
    ("`llamacpp://`", frozenset()),
    ("`extractive://`", frozenset()),
)
REFUSED = "400 `unsupported_parameter`"
# Tools the model may leave unused (tool_choice auto or unset, as Open WebUI sends its built-in tools).
TOOLS_REFUSED = "answered in text; 400 `unsupported_parameter` when `tool_choice` is `required` or names a function"

# Parameter, its feature (None: every backend), then one cell per backend (None: computed from the feature).
ROWS: tuple[tuple[str, str | None, tuple[str | None, ...]], ...] = (
    ("`temperature`, `top_p`", None, ("passed", "`options`", "passed", "ignored (no sampling)")),
    (
        "`max_tokens`, `max_completion_tokens`",
        None,
        ("passed as `max_tokens`", "`options.num_predict`", "passed", "cut at that many words, `length`"),
    ),
    ("`stop` (up to 4)", None, ("passed", "`options.stop`", "passed", "cut before the first stop sequence")),
    ("`seed`", None, ("passed", "`options.seed`", "passed", "no effect (deterministic)")),
    ("`response_format` (`json_object`, `json_schema`)", "response_format", (None, "`format`", None, None)),
    ("`tools`, `tool_choice`", "tools", (None, "`tools` (`tool_choice`: `auto`, `none`)", None, None)),
    ("`logprobs`, `top_logprobs`", "logprobs", (None, None, None, None)),
    ("`stream_options.include_usage`", None, ("a usage chunk last",) * 4),
    ("`n` other than 1", None, ("400 `invalid_request`",) * 4),
)


def render_table() -> str:
    """The Markdown table of every chat parameter against every backend."""
    header = "| parameter | " + " | ".join(name for name, _ in BACKENDS) + " |"
    lines = [header, "|---" * (len(BACKENDS) + 1) + "|"]
    for param, feature, cells in ROWS:
        out = []
        for (_, features), cell in zip(BACKENDS, cells, strict=True):
            if feature is not None and feature not in features:
                out.append(TOOLS_REFUSED if feature == "tools" else REFUSED)
            else:
                out.append(cell or "passed")
        lines.append(f"| {param} | " + " | ".join(out) + " |")
    return "\n".join(lines)

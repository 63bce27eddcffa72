"""The price table: what a million prompt and completion tokens cost on each target.

A YAML or JSON file::

    currency: USD
    prices:
      "openai://?model=gpt-4o-mini": {input_per_1m: 0.15, output_per_1m: 0.60}
      llama3.2: {input_per_1m: 0.0, output_per_1m: 0.0}     # by model name
      kserve+http: {input_per_1m: 0.02, output_per_1m: 0.02}  # by scheme (GPU hours spread over tokens)

A target's price is looked up by its full URL, then its ``?model=``, then its scheme. A target with no
price has no cost (``null`` in the results, "n/a" in reports), never a silent zero; only the extractive
answerer is free by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval.metrics import cost as call_cost
from rag.errors import InvalidRequest
from rag.registry import parse_url
from rag.types import Usage

FREE_SCHEMES = frozenset({"extractive"})


class Price(BaseModel):
    """Per-million-token prices of one target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1m: float = Field(ge=0, description="Price of one million prompt tokens.")
    output_per_1m: float = Field(ge=0, description="Price of one million completion tokens.")


class PriceTable(BaseModel):
    """Prices by target URL, model name or scheme."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = "USD"
    prices: dict[str, Price] = Field(default_factory=dict)

    def price_for(self, target: str) -> Price | None:
        """The price of a target URL, or None when the table does not know it."""
        if target in self.prices:
            return self.prices[target]
        url = parse_url(target)
        model = url.query.get("model")
        if model and model in self.prices:
            return self.prices[model]
        if url.scheme in self.prices:
            return self.prices[url.scheme]
        if url.scheme in FREE_SCHEMES:
            return Price(input_per_1m=0.0, output_per_1m=0.0)
        return None

    def cost(self, target: str, usage: Usage) -> float | None:
        """The cost of one call, or None when the target has no price."""
        price = self.price_for(target)
        if price is None:
            return None
        return call_cost(usage, price.input_per_1m, price.output_per_1m)


def load_prices(path: Path | str | None) -> PriceTable:
    """Read a price table file (YAML or JSON); no file gives an empty table."""
    if path is None:
        return PriceTable()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        return PriceTable.model_validate(raw or {})
    except (OSError, ValueError, yaml.YAMLError) as e:
        # ValidationError is a ValueError; its message names the bad field.
        detail = str(e) if not isinstance(e, ValidationError) else e.errors()[0]["msg"]
        raise InvalidRequest(f"{path}: cannot read the price table: {detail}") from e

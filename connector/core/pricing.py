"""Estimated cost of token usage: a per-model price table and the batch discount.

The table ships as `connector/data/prices.json` (interactive-API prices per 1M tokens, with
its source and the date it was read) and can be overridden by a file named in
`CONNECTOR_PRICE_TABLE`: the models it lists replace the shipped ones, the others stay.
Everything here is an **estimate** for dashboards and attribution; Google's bill is the truth.

Input tokens are `prompt_tokens`; output tokens are `total - prompt` (that includes thinking
tokens, which Gemini bills as output), or `candidates_tokens` when the total is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from connector.core.records import TokenUsage
from connector.errors import ConfigError

__all__ = ["Cost", "Price", "PriceTable", "load_price_table"]

_PER = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Interactive-API USD per 1M tokens; `*_long` apply past `long_context_tokens` of prompt."""

    input: float
    output: float
    input_long: float | None = None
    output_long: float | None = None
    long_context_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Cost:
    """One usage priced: tokens in and out, USD at batch and at interactive price."""

    input_tokens: int
    output_tokens: int
    batch_usd: float
    interactive_usd: float

    @property
    def saving_usd(self) -> float:
        return self.interactive_usd - self.batch_usd


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices by model id; lookups accept `models/` prefixes and versioned suffixes."""

    models: Mapping[str, Price] = field(default_factory=dict)
    batch_discount: float = 0.5
    """Fraction of the interactive price the Batch API bills (0.5 = half price)."""
    source: str = ""
    retrieved: str = ""

    def price(self, model: str) -> Price | None:
        """Exact id, else the longest known id the model starts with (`-preview-09-2025`...)."""
        name = model.removeprefix("models/")
        found = self.models.get(name)
        if found is not None:
            return found
        best = max((k for k in self.models if name.startswith(k)), key=len, default=None)
        return None if best is None else self.models[best]

    def cost(self, model: str, usage: TokenUsage | None) -> Cost | None:
        """The usage priced for `model`; None when usage or the model's price is unknown."""
        if usage is None:
            return None
        p = self.price(model)
        if p is None:
            return None
        tokens_in = max(usage.prompt_tokens, 0)
        tokens_out = max(usage.total_tokens - usage.prompt_tokens, usage.candidates_tokens, 0)
        long = 0 < p.long_context_tokens < tokens_in
        rate_in = p.input_long if long and p.input_long is not None else p.input
        rate_out = p.output_long if long and p.output_long is not None else p.output
        interactive = (tokens_in * rate_in + tokens_out * rate_out) / _PER
        return Cost(tokens_in, tokens_out, interactive * self.batch_discount, interactive)

    def batch_usd(self, model: str, usage: TokenUsage | None) -> float | None:
        c = self.cost(model, usage)
        return None if c is None else c.batch_usd


def _price(model: str, raw: Any) -> Price:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"price table: model {model!r} must map to an object")
    try:
        return Price(
            input=float(raw["input"]),
            output=float(raw.get("output", 0.0)),
            input_long=None if raw.get("input_long") is None else float(raw["input_long"]),
            output_long=None if raw.get("output_long") is None else float(raw["output_long"]),
            long_context_tokens=int(raw.get("long_context_tokens", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"price table: model {model!r} has a bad price: {exc!r}") from exc


def parse_price_table(data: Mapping[str, Any], base: PriceTable | None = None) -> PriceTable:
    """Build a table from JSON data; on top of `base` when given (listed models replace)."""
    models_raw = data.get("models", {})
    if not isinstance(models_raw, Mapping):
        raise ConfigError("price table: 'models' must be an object of model id -> prices")
    models = dict(base.models) if base is not None else {}
    models.update({str(k): _price(str(k), v) for k, v in models_raw.items()})
    discount = data.get("batch_discount", base.batch_discount if base is not None else 0.5)
    try:
        discount = float(discount)
    except (TypeError, ValueError) as exc:
        raise ConfigError("price table: 'batch_discount' must be a number") from exc
    if not 0 <= discount <= 1:
        raise ConfigError("price table: 'batch_discount' must be between 0 and 1")
    return PriceTable(
        models=models,
        batch_discount=discount,
        source=str(data.get("source", base.source if base is not None else "")),
        retrieved=str(data.get("retrieved", base.retrieved if base is not None else "")),
    )


def default_price_table() -> PriceTable:
    """The table shipped with the package (`connector/data/prices.json`)."""
    text = (resources.files("connector") / "data" / "prices.json").read_text(encoding="utf-8")
    return parse_price_table(json.loads(text))


def load_price_table(path: str = "") -> PriceTable:
    """The shipped table, overridden by the JSON file at `path` when one is given."""
    table = default_price_table()
    if not path:
        return table
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CONNECTOR_PRICE_TABLE {path!r} is unreadable: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"CONNECTOR_PRICE_TABLE {path!r} must hold a JSON object")
    return parse_price_table(data, base=table)

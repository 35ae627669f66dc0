"""Estimated cost of token usage: a per-model price table and the batch discount.

The table ships as `connector/data/prices.json` (interactive-API prices per 1M tokens, with
its source and the date it was read) and can be overridden by a file named in
`CONNECTOR_PRICE_TABLE`: the models it lists replace the shipped ones, the others stay.
Everything here is an **estimate** for dashboards and attribution; Google's bill is the truth.

Input tokens are `prompt_tokens`; output tokens are `total - prompt` (that includes thinking
tokens, which Gemini bills as output), or `candidates_tokens` when the total is missing.
Where a model bills a modality at its own rate, the response's per-modality counts are priced
at it: audio input (`input_audio`), image output (`output_image`) and audio output
(`output_audio`); the rest at the plain rates.

A model is priced by its own row, or by a row it extends only with a version suffix
(`-preview`, `-001`, `-09-2025`, `-latest`...): `gemini-2.5-flash-image` or a `-tts` model
never falls back to the cheaper `gemini-2.5-flash`. A model with no row has no cost.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from connector.core.records import TokenUsage
from connector.errors import ConfigError

__all__ = ["Cost", "Price", "PriceTable", "load_price_table", "token_counts"]

_PER = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Interactive-API USD per 1M tokens; `*_long` apply past `long_context_tokens` of prompt."""

    input: float
    output: float
    input_long: float | None = None
    output_long: float | None = None
    long_context_tokens: int = 0
    input_audio: float | None = None
    """Audio input tokens, where dearer than text/image/video (e.g. 2.5 Flash: 1.00 vs 0.30)."""
    output_image: float | None = None
    """Image output tokens of image-generating models."""
    output_audio: float | None = None
    """Audio output tokens (speech generation)."""


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
    _found: dict[str, Price | None] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    """Lookups by the name a result carries (every result is priced; an unknown or versioned
    name would scan the table each time). Bounded like the warnings of unpriced models."""

    def price(self, model: str) -> Price | None:
        """Exact id, else the longest known id the model extends with a version suffix only
        (`gemini-2.5-flash-preview-09-2025` -> `gemini-2.5-flash`); None when neither."""
        try:
            return self._found[model]
        except KeyError:
            pass
        found = self._lookup(model)
        if len(self._found) < _MAX_CACHED:
            self._found[model] = found
        return found

    def _lookup(self, model: str) -> Price | None:
        name = model.removeprefix("models/")
        found = self.models.get(name)
        if found is not None:
            return found
        best = max(
            (
                k
                for k in self.models
                if name.startswith(k) and _VERSION_SUFFIX.fullmatch(name, len(k)) is not None
            ),
            key=len,
            default=None,
        )
        return None if best is None else self.models[best]

    def cost(self, model: str, usage: TokenUsage | None) -> Cost | None:
        """The usage priced for `model`; None when usage or the model's price is unknown."""
        if usage is None:
            return None
        p = self.price(model)
        if p is None:
            return None
        tokens_in, tokens_out = token_counts(usage)
        long = 0 < p.long_context_tokens < tokens_in
        rate_in = p.input_long if long and p.input_long is not None else p.input
        rate_out = p.output_long if long and p.output_long is not None else p.output
        audio_in = min(max(usage.prompt_audio_tokens, 0), tokens_in)
        image_out = min(max(usage.output_image_tokens, 0), tokens_out)
        audio_out = min(max(usage.output_audio_tokens, 0), tokens_out - image_out)
        interactive = (
            (tokens_in - audio_in) * rate_in
            + audio_in * (rate_in if p.input_audio is None else p.input_audio)
            + (tokens_out - image_out - audio_out) * rate_out
            + image_out * (rate_out if p.output_image is None else p.output_image)
            + audio_out * (rate_out if p.output_audio is None else p.output_audio)
        ) / _PER
        return Cost(tokens_in, tokens_out, interactive * self.batch_discount, interactive)

    def batch_usd(self, model: str, usage: TokenUsage | None) -> float | None:
        c = self.cost(model, usage)
        return None if c is None else c.batch_usd

    def saving_usd(self, batch_usd: float) -> float:
        """What a batch cost saved against the interactive price (`cost().saving_usd`, from
        the batch figure alone)."""
        d = self.batch_discount
        return batch_usd / d - batch_usd if d > 0 else 0.0


def token_counts(usage: TokenUsage) -> tuple[int, int]:
    """Tokens in and out as billed: output is whatever the total holds past the prompt
    (thinking tokens included), at least the candidates' count."""
    tokens_in = max(usage.prompt_tokens, 0)
    return tokens_in, max(usage.total_tokens - usage.prompt_tokens, usage.candidates_tokens, 0)


_MAX_CACHED = 1024
"""Model names whose lookup is kept (a name comes from a request; the table is small)."""

_VERSION_SUFFIX = re.compile(r"(?:-(?:preview|exp|latest|\d{3}))*(?:-\d{2}-\d{4}|-\d{2}-\d{2})?")
"""What may follow a priced model id and still be that model: a release stage, a version
number, a date. A word such as `-image`, `-tts`, `-lite` or `-live` names another model."""
_OPTIONAL = ("input_long", "output_long", "input_audio", "output_image", "output_audio")


def _price(model: str, raw: Any) -> Price:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"price table: model {model!r} must map to an object")
    try:
        optional = {k: None if raw.get(k) is None else float(raw[k]) for k in _OPTIONAL}
        price = Price(
            input=float(raw["input"]),
            output=float(raw.get("output", 0.0)),
            long_context_tokens=int(raw.get("long_context_tokens", 0)),
            **optional,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"price table: model {model!r} has a bad price: {exc!r}") from exc
    rates = [price.input, price.output, *(v for v in optional.values() if v is not None)]
    if not all(0 <= r < math.inf for r in rates):  # NaN compares false too
        raise ConfigError(f"price table: model {model!r} has a negative or NaN price")
    return price


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

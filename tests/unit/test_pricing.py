"""Cost estimates: the shipped price table, overrides, and the batch/interactive math."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.core.pricing import Price, PriceTable, load_price_table, parse_price_table
from connector.core.records import TokenUsage
from connector.errors import ConfigError


def test_shipped_table_names_its_source_and_date_and_halves_for_batch() -> None:
    t = load_price_table()
    assert t.source.startswith("https://ai.google.dev/")
    assert t.retrieved
    assert t.batch_discount == 0.5
    assert {"gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"} <= set(t.models)


def test_cost_math_input_output_and_thinking_tokens() -> None:
    """Output tokens are total - prompt (thinking included); batch is half of interactive."""
    t = PriceTable({"m": Price(input=1.0, output=10.0)}, batch_discount=0.5)
    c = t.cost(
        "m", TokenUsage(prompt_tokens=1_000_000, candidates_tokens=100, total_tokens=1_000_300)
    )
    assert c is not None
    assert (c.input_tokens, c.output_tokens) == (1_000_000, 300)
    assert c.interactive_usd == pytest.approx(1.0 + 300 * 10.0 / 1e6)
    assert c.batch_usd == pytest.approx(c.interactive_usd / 2)
    assert c.saving_usd == pytest.approx(c.interactive_usd / 2)
    # No total: candidates are the output.
    c2 = t.cost("m", TokenUsage(prompt_tokens=0, candidates_tokens=1_000_000, total_tokens=0))
    assert c2 is not None
    assert c2.interactive_usd == pytest.approx(10.0)


def test_long_context_rates_apply_past_the_threshold() -> None:
    p = Price(
        input=1.25, output=10.0, input_long=2.5, output_long=15.0, long_context_tokens=200_000
    )
    t = PriceTable({"gemini-2.5-pro": p})
    short = t.cost("gemini-2.5-pro", TokenUsage(200_000, 0, 200_000))
    long = t.cost("gemini-2.5-pro", TokenUsage(200_001, 0, 200_001))
    assert short is not None
    assert long is not None
    assert short.interactive_usd == pytest.approx(0.25)
    assert long.interactive_usd == pytest.approx(200_001 * 2.5 / 1e6)


def test_model_lookup_prefixes_and_unknown_models() -> None:
    t = load_price_table()
    flash = t.price("gemini-2.5-flash")
    assert t.price("models/gemini-2.5-flash") == flash
    assert t.price("gemini-2.5-flash-preview-09-2025") == flash
    assert t.price("gemini-2.5-flash-lite") != flash  # the longest known prefix wins
    assert t.price("tunedModels/mine") is None
    assert t.cost("tunedModels/mine", TokenUsage(1, 1, 2)) is None
    assert t.cost("gemini-2.5-flash", None) is None
    usd = t.batch_usd("gemini-2.5-flash", TokenUsage(1_000_000, 1_000_000, 2_000_000))
    assert usd == pytest.approx((0.30 + 2.50) / 2)


def test_override_file_replaces_listed_models_and_keeps_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    f.write_text(
        json.dumps(
            {
                "source": "our contract",
                "batch_discount": 0.4,
                "models": {"gemini-2.5-flash": {"input": 1, "output": 2}, "custom": {"input": 3}},
            }
        )
    )
    t = load_price_table(str(f))
    assert t.price("gemini-2.5-flash") == Price(1.0, 2.0)
    assert t.price("custom") == Price(3.0, 0.0)
    assert t.price("gemini-2.5-pro") is not None
    assert (t.batch_discount, t.source) == (0.4, "our contract")


@pytest.mark.parametrize(
    "data",
    [{"models": []}, {"models": {"m": {"output": 1}}}, {"batch_discount": 2}, {"models": {"m": 1}}],
)
def test_bad_tables_are_config_errors(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_price_table(data)


def test_unreadable_override_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_PRICE_TABLE"):
        load_price_table(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError):
        load_price_table(str(tmp_path / "bad.json"))

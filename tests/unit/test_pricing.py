"""Cost estimates: the shipped price table, overrides, and the batch/interactive math."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.pricing import (
    Price,
    PriceTable,
    load_price_table,
    parse_price_table,
    token_counts,
)
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


# -- the refreshed table: its provenance, modality rates and own-row rule -----------------


def _shipped() -> dict[str, object]:
    return json.loads((Path(__file__).parents[2] / "connector/data/prices.json").read_text())


def test_the_shipped_table_records_its_source_date_and_each_rows_provenance() -> None:
    import datetime

    data = _shipped()
    assert data["source"] == "https://ai.google.dev/gemini-api/docs/pricing"
    datetime.date.fromisoformat(str(data["retrieved"]))  # a real date
    assert data["read_via"]
    models = data["models"]
    assert isinstance(models, dict)
    unsourced = [m for m, row in models.items() if not row.get("seen")]
    assert not unsourced, f"rows without provenance: {unsourced}"


def test_current_generations_image_and_speech_models_have_their_own_rows() -> None:
    t = load_price_table()
    for model in (
        "gemini-3.8-flash",
        "gemini-3.5-flash",
        "gemini-3.5-flash-lite",
        "gemini-3.1-pro-preview",
        "gemini-3-pro-image-preview",
        "gemini-2.5-flash-image",
        "gemini-2.5-flash-preview-tts",
        "gemini-3.8-flash-tts",
    ):
        assert model in t.models, model
    assert t.models["gemini-2.5-flash-image"].output_image == 30.0
    assert t.models["gemini-2.5-flash-preview-tts"].output_audio == 10.0
    assert t.models["gemini-2.5-flash"].input_audio == 1.0


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-flash-image-preview", "gemini-2.5-flash-image"),
        ("models/gemini-3.8-flash", "gemini-3.8-flash"),
    ],
)
def test_version_suffixes_find_the_models_row(model: str, row: str) -> None:
    t = load_price_table()
    assert t.price(model) == t.models[row]


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-flash-image",  # not the text model's 2.50: images are 30.00
        "gemini-2.5-flash-preview-tts",
        "gemini-2.5-flash-native-audio-dialog",
        "gemini-2.5-flash-live",
        "gemini-3.8-flash-lite",
    ],
)
def test_a_variant_never_borrows_the_cheaper_base_models_row(model: str) -> None:
    """Without its own row a variant is unpriced: no cost beats a cost 10x too low."""
    base = PriceTable({"gemini-2.5-flash": Price(0.3, 2.5), "gemini-3.8-flash": Price(0.75, 3.75)})
    assert base.price(model) is None
    assert base.cost(model, TokenUsage(10, 10, 20)) is None


def test_audio_input_and_image_and_audio_output_use_their_rates() -> None:
    p = Price(input=0.30, output=2.50, input_audio=1.00, output_image=30.0, output_audio=10.0)
    t = PriceTable({"m": p}, batch_discount=0.5)
    usage = TokenUsage(
        prompt_tokens=1_000_000,
        candidates_tokens=3_000_000,
        total_tokens=4_000_000,
        prompt_audio_tokens=400_000,
        output_image_tokens=1_000_000,
        output_audio_tokens=1_000_000,
    )
    c = t.cost("m", usage)
    assert c is not None
    expected = 0.6 * 0.30 + 0.4 * 1.00 + 1.0 * 2.50 + 1.0 * 30.0 + 1.0 * 10.0
    assert c.interactive_usd == pytest.approx(expected)
    assert c.batch_usd == pytest.approx(expected / 2)
    # Without modality rates, the same tokens cost the plain rates.
    plain = PriceTable({"m": Price(input=0.30, output=2.50)}).cost("m", usage)
    assert plain is not None
    assert plain.interactive_usd == pytest.approx(0.30 + 3 * 2.50)


def test_modality_counts_never_exceed_the_totals() -> None:
    """A provider reporting more audio than prompt tokens cannot make the cost negative."""
    t = PriceTable({"m": Price(input=1.0, output=1.0, input_audio=2.0, output_image=4.0)})
    c = t.cost("m", TokenUsage(10, 10, 20, prompt_audio_tokens=50, output_image_tokens=50))
    assert c is not None
    assert c.interactive_usd == pytest.approx((10 * 2.0 + 10 * 4.0) / 1e6)


def test_usage_reads_the_per_modality_counts() -> None:
    from connector.core.results import usage_of

    usage = usage_of(
        {
            "usageMetadata": {
                "promptTokenCount": 30,
                "candidatesTokenCount": 1290,
                "totalTokenCount": 1320,
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 10},
                    {"modality": "AUDIO", "tokenCount": 20},
                ],
                "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            }
        }
    )
    assert usage == TokenUsage(30, 1290, 1320, 20, 1290, 0)


@pytest.mark.parametrize("bad", [{"input": -1.0}, {"input": 1.0, "output_image": "x"}])
def test_negative_or_malformed_modality_prices_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="'m'"):
        parse_price_table({"models": {"m": bad}})


def test_an_unknown_model_gets_no_cost_and_one_warning() -> None:
    import structlog
    from loop_support import make, settled

    h = make()
    h.consumer.assign(0)
    ids = [f"u-{i}" for i in range(3)]
    for rid in ids:
        h.publish(rid, f"prompt {rid}", model="gemini-99-unreleased")
    h.publish("k-0", "prompt", model="gemini-2.5-flash")
    with structlog.testing.capture_logs() as logs:
        h.run_until(lambda: settled(h, [*ids, "k-0"]), advance_s=1.0)
    by_id = h.results_by_id()
    assert all(by_id[r][0].usage is not None and by_id[r][0].cost_usd is None for r in ids)
    assert by_id["k-0"][0].cost_usd is not None
    warned = [e for e in logs if e["event"].startswith("model has no price")]
    assert [e["model"] for e in warned] == ["gemini-99-unreleased"]


@given(
    prompt=st.integers(0, 3_000_000),
    candidates=st.integers(0, 100_000),
    thinking=st.integers(0, 100_000),
    discount=st.sampled_from([0.5, 0.25, 1.0]),
)
def test_the_saving_from_the_batch_cost_alone_is_the_costs_saving(
    prompt: int, candidates: int, thinking: int, discount: float
) -> None:
    """The metrics take a result's `cost_usd` as it was built and derive the saving from it:
    the same figure as pricing the usage again."""
    t = PriceTable(
        {"m": Price(input=1.25, output=10.0, long_context_tokens=200_000, input_long=2.5)},
        batch_discount=discount,
    )
    usage = TokenUsage(prompt, candidates, prompt + candidates + thinking)
    c = t.cost("m", usage)
    assert c is not None
    assert t.saving_usd(c.batch_usd) == pytest.approx(c.saving_usd, rel=1e-9, abs=1e-15)
    assert token_counts(usage) == (c.input_tokens, c.output_tokens)


def test_lookups_are_kept_per_table_and_a_replaced_table_starts_afresh() -> None:
    t = PriceTable({"gemini-2.5-flash": Price(input=1.0, output=2.0)})
    versioned = "models/gemini-2.5-flash-preview-09-2025"
    assert t.price(versioned) is t.models["gemini-2.5-flash"]
    assert t.price("unknown-model") is None
    assert set(t._found) == {versioned, "unknown-model"}
    other = replace(t, models={"unknown-model": Price(input=3.0, output=4.0)})
    assert other.price("unknown-model") == Price(input=3.0, output=4.0)
    assert other.price(versioned) is None
    assert t == PriceTable({"gemini-2.5-flash": Price(input=1.0, output=2.0)})  # cache not compared

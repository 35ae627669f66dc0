"""Settings: one table drives env vars, flags, defaults and the README; bad settings refuse."""

from __future__ import annotations

import argparse
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import config
from connector.config import KAFKA_PREFIX, OPTIONS, Settings, build_parser, env_table, load
from connector.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"
# The minimum that lets the sidecar start: an explicit endpoint, no key needed.
BASE = {"CONNECTOR_GEMINI_BASE_URL": "http://127.0.0.1:8765"}


def _load(**env: str) -> Settings:
    return load(env={**BASE, **env}, args=None)


def _flags(*argv: str) -> argparse.Namespace:
    return build_parser(argparse.ArgumentParser()).parse_args(list(argv))


# -- the table and the dataclass agree -----------------------------------------------------


def test_every_option_is_a_settings_field_with_the_same_default() -> None:
    """OPTIONS and Settings declare each default twice; a mismatch would make the docs lie."""
    by_name = {f.name: f for f in fields(Settings)}
    for opt in OPTIONS:
        assert opt.attr in by_name, f"{opt.attr} has no Settings field"
        f = by_name[opt.attr]
        assert f.default is not MISSING, f"{opt.attr} has no default in Settings"
        assert f.default == opt.default, opt.attr
        assert type(f.default) is opt.type, opt.attr


def test_every_settings_field_is_an_option() -> None:
    """A Settings field without an Option could never be set from env or flags."""
    attrs = {o.attr for o in OPTIONS}
    missing = {f.name for f in fields(Settings)} - attrs - {"kafka_extra", "secret_files"}
    assert not missing


def test_option_names_are_unique() -> None:
    """Two options sharing an env var or attribute would silently shadow each other."""
    assert len({o.attr for o in OPTIONS}) == len(OPTIONS)
    assert len({o.env for o in OPTIONS}) == len(OPTIONS)


def test_empty_environment_with_endpoint_gives_defaults() -> None:
    """With nothing but an endpoint set, load() returns exactly the table's defaults."""
    s = _load()
    for opt in OPTIONS:
        if opt.attr != "gemini_base_url":
            assert getattr(s, opt.attr) == opt.default, opt.attr
    assert s.kafka_extra == {}
    assert s.ledger == "gemini-batch-connector.llm.requests.ledger"


# -- refusing to start ------------------------------------------------------------------


def test_no_key_and_no_base_url_refuses_naming_both() -> None:
    """Without a key or an explicit endpoint the sidecar must not fall back silently."""
    with pytest.raises(ConfigError) as info:
        load(env={}, args=None)
    msg = str(info.value)
    assert "GEMINI_API_KEY" in msg
    assert "CONNECTOR_GEMINI_BASE_URL" in msg


def test_blank_api_key_counts_as_missing() -> None:
    """A key of only whitespace (a templating slip) is no key at all."""
    with pytest.raises(ConfigError):
        load(env={"GEMINI_API_KEY": "   "}, args=None)


@pytest.mark.parametrize("var", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_either_key_variable_is_enough(var: str) -> None:
    """Both variable names the Google SDKs read are accepted for the key."""
    s = load(env={var: "k-123"}, args=None)
    assert s.api_key == "k-123"
    assert s.gemini_base_url == ""
    assert "Google" in s.endpoint


def test_gemini_api_key_wins_over_google_api_key() -> None:
    """GEMINI_API_KEY is the documented variable, so it takes precedence."""
    s = load(env={"GEMINI_API_KEY": "gem", "GOOGLE_API_KEY": "goo"}, args=None)
    assert s.api_key == "gem"


@pytest.mark.parametrize("url", ["ftp://host", "localhost:8765", "127.0.0.1", "file:///tmp/x"])
def test_base_url_must_be_http(url: str) -> None:
    """A URL without http(s) would be sent to the SDK and fail late and obscurely."""
    with pytest.raises(ConfigError, match="http"):
        _load(CONNECTOR_GEMINI_BASE_URL=url)


@pytest.mark.parametrize("url", ["http://emu:8765", "https://gemini.example/"])
def test_http_and_https_base_urls_are_accepted(url: str) -> None:
    """Both schemes are fine, and the endpoint description names the URL."""
    s = _load(CONNECTOR_GEMINI_BASE_URL=url)
    assert s.gemini_base_url == url
    assert url in s.endpoint


@pytest.mark.parametrize(
    "env",
    [
        {"CONNECTOR_RESULT_TOPIC": "llm.requests"},
        {"CONNECTOR_DLQ_TOPIC": "llm.results"},
        {"CONNECTOR_LEDGER_TOPIC": "llm.requests"},
        {"CONNECTOR_GROUP_ID": "llm", "CONNECTOR_RESULT_TOPIC": "llm.llm.requests.ledger"},
    ],
)
def test_topics_must_all_differ(env: dict[str, str]) -> None:
    """Results or ledger entries written to the request topic would loop or corrupt it."""
    with pytest.raises(ConfigError, match="differ"):
        _load(**env)


def test_inline_max_must_stay_under_20_mb() -> None:
    """Gemini rejects inline jobs of 20 MB or more, so the threshold must be below it."""
    with pytest.raises(ConfigError, match="20 MB"):
        _load(CONNECTOR_BATCH_INLINE_MAX_BYTES="20000000")
    assert _load(CONNECTOR_BATCH_INLINE_MAX_BYTES="19999999").batch_inline_max_bytes == 19_999_999


@pytest.mark.parametrize("var", [o.env for o in OPTIONS if o.type in (int, float)])
@pytest.mark.parametrize("raw", ["abc", "", "1e", "ten"])
def test_bad_number_names_the_variable(var: str, raw: str) -> None:
    """A typo in a number must say which variable is wrong, not raise a bare ValueError."""
    with pytest.raises(ConfigError) as info:
        _load(**{var: raw})
    assert var in str(info.value)
    assert repr(raw) in str(info.value)


def test_float_option_is_not_accepted_as_int() -> None:
    """An int setting given as 5.0 is refused rather than truncated."""
    with pytest.raises(ConfigError, match="CONNECTOR_BATCH_MAX_REQUESTS"):
        _load(CONNECTOR_BATCH_MAX_REQUESTS="5.0")


def test_numbers_are_converted() -> None:
    """Env values are strings; settings carry their declared types."""
    s = _load(CONNECTOR_BATCH_MAX_REQUESTS="7", CONNECTOR_BATCH_MAX_WAIT_S="0.5")
    assert s.batch_max_requests == 7
    assert s.batch_max_wait_s == 0.5


@pytest.mark.parametrize(
    "env",
    [
        {"CONNECTOR_BATCH_MAX_REQUESTS": "0"},
        {"CONNECTOR_BATCH_MAX_WAIT_S": "0"},
        {"CONNECTOR_MAX_REQUEST_BYTES": "200", "CONNECTOR_BATCH_MAX_BYTES": "100"},
        {"CONNECTOR_LOG_FORMAT": "xml"},
    ],
)
def test_other_contradictions_refuse(env: dict[str, str]) -> None:
    """Limits that could never seal a batch, or an unknown log format, stop the start."""
    with pytest.raises(ConfigError):
        _load(**env)


# -- Kafka pass-through and masking ----------------------------------------------------


def test_kafka_pass_through_lowercases_and_keeps_values_as_written() -> None:
    """CONNECTOR_KAFKA_<NAME> becomes kafka-python's <name>; the value stays the string it
    was (the Kafka adapter types it against kafka-python's defaults, see
    test_kafka_settings.py), so nothing is guessed here."""
    s = _load(
        CONNECTOR_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        CONNECTOR_KAFKA_REQUEST_TIMEOUT_MS="30000",
        CONNECTOR_KAFKA_SASL_PLAIN_PASSWORD="0123",
    )
    assert s.kafka_extra == {
        "security_protocol": "SASL_SSL",
        "request_timeout_ms": "30000",
        "sasl_plain_password": "0123",
    }


def test_kafka_pass_through_only_takes_its_prefix() -> None:
    """Only the prefix counts; KAFKA_BOOTSTRAP_SERVERS is a normal option, and a variable
    that merely starts like the prefix is an unknown setting, not a Kafka one."""
    s = _load(KAFKA_BOOTSTRAP_SERVERS="a:1,b:2")
    assert s.kafka_extra == {}
    assert s.bootstrap_servers == "a:1,b:2"
    with pytest.raises(ConfigError, match="CONNECTOR_KAFKAX"):
        _load(CONNECTOR_KAFKAX="1")


@given(st.from_regex(r"[A-Za-z0-9 ._:/-]{0,20}", fullmatch=True))
def test_kafka_values_are_never_coerced_at_load(raw: str) -> None:
    """Whatever is written, digits and true/false included, arrives as that same string."""
    s = _load(CONNECTOR_KAFKA_SASL_MECHANISM=raw)
    got = s.kafka_extra["sasl_mechanism"]
    assert got == raw
    assert isinstance(got, str)


def test_describe_masks_secrets() -> None:
    """The start-up log line must never carry the API key or a Kafka secret."""
    secret_names = [
        "SASL_PLAIN_PASSWORD",
        "SSL_PASSWORD",
        "SASL_OAUTH_TOKEN_PROVIDER",
        "SSL_KEYFILE",
        "SOME_SECRET",
    ]
    env = {f"{KAFKA_PREFIX}{n}": f"value-{i}-hidden" for i, n in enumerate(secret_names)}
    env["GEMINI_API_KEY"] = "AIza-very-secret"
    env[f"{KAFKA_PREFIX}SASL_PLAIN_USERNAME"] = "alice"
    s = load(env=env, args=None)
    d = s.describe()
    assert d["api_key"] == "***"
    for n in secret_names:
        assert d["kafka_extra"][n.lower()] == "***", n
    assert d["kafka_extra"]["sasl_plain_username"] == "alice"
    text = repr(d) + repr(s)
    assert "AIza-very-secret" not in text
    assert "-hidden" not in text
    # Everything else is shown as loaded.
    assert d["request_topic"] == s.request_topic
    assert set(d) == {f.name for f in fields(Settings)}


def test_describe_shows_empty_key_as_empty() -> None:
    """No key is shown as no key, so an operator can tell "unset" from "masked"."""
    assert _load().describe()["api_key"] == ""


# -- flags -----------------------------------------------------------------------------


def test_flags_override_env() -> None:
    """Precedence is flag, then environment, then default."""
    args = _flags("--request-topic", "from.flag", "--batch-max-requests", "9")
    s = load(
        env={**BASE, "CONNECTOR_REQUEST_TOPIC": "from.env", "CONNECTOR_RESULT_TOPIC": "r.env"},
        args=args,
    )
    assert s.request_topic == "from.flag"
    assert s.batch_max_requests == 9
    assert s.result_topic == "r.env"  # no flag given: env applies
    assert s.dlq_topic == "llm.requests.dlq"  # neither: default


def test_flag_values_are_validated_too() -> None:
    """A bad flag value is a ConfigError, not an argparse crash later."""
    with pytest.raises(ConfigError):
        load(env=BASE, args=_flags("--max-jobs", "many"))
    with pytest.raises(ConfigError, match="http"):
        load(env={}, args=_flags("--gemini-base-url", "emu:1"))


def test_base_url_flag_alone_is_enough_to_start() -> None:
    """The emulator can be chosen on the command line without any environment."""
    s = load(env={}, args=_flags("--gemini-base-url", "http://emu:1"))
    assert s.gemini_base_url == "http://emu:1"


def test_api_key_has_no_flag() -> None:
    """Secrets are environment-only so they never show in a process list."""
    parser = build_parser(argparse.ArgumentParser())
    opts = {o for a in parser._actions for o in a.option_strings}
    assert "--api-key" not in opts
    for opt in OPTIONS:
        assert (f"--{opt.attr.replace('_', '-')}" in opts) == opt.flag, opt.attr


# -- documentation ---------------------------------------------------------------------


def test_env_table_lists_every_variable() -> None:
    """`connector settings` prints this table; every option and the pass-through appear."""
    table = env_table()
    lines = table.splitlines()
    assert len(lines) == 2 + len(OPTIONS) + 3
    for opt in OPTIONS:
        assert f"| `{opt.env}` |" in table, opt.env
    assert f"`{KAFKA_PREFIX}<NAME>`" in table
    assert "(env only)" in next(line for line in lines if "`GEMINI_API_KEY`" in line)


def test_readme_documents_every_variable() -> None:
    """The README's Configuration section names every env var (drift test)."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Configuration\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if m is None:
        pytest.skip("README.md has no '## Configuration' section yet")
    section = m.group(1)
    missing = [o.env for o in OPTIONS if f"`{o.env}`" not in section]
    assert not missing, f"README Configuration lacks {missing}; paste `connector settings`"
    assert f"`{config.KAFKA_PREFIX}<NAME>`" in section


def test_pass_budget_must_stay_well_below_the_poll_interval() -> None:
    """A pass plus one provider call must end before the group drops the replica."""
    base = {"CONNECTOR_GEMINI_BASE_URL": "http://x"}
    assert load(base).pass_budget_s == 2.0
    ok = {**base, "CONNECTOR_KAFKA_MAX_POLL_INTERVAL_MS": "8000", "CONNECTOR_HTTP_TIMEOUT_S": "2"}
    assert load({**ok, "CONNECTOR_PASS_BUDGET_S": "1"}).pass_budget_s == 1.0
    with pytest.raises(ConfigError, match="CONNECTOR_PASS_BUDGET_S"):
        load({**ok, "CONNECTOR_PASS_BUDGET_S": "3"})
    with pytest.raises(ConfigError, match="CONNECTOR_PASS_BUDGET_S"):
        load({**base, "CONNECTOR_PASS_BUDGET_S": "0"})


def test_processing_guarantee_is_one_of_two() -> None:
    base = {"CONNECTOR_GEMINI_BASE_URL": "http://x"}
    assert not load(base).exactly_once
    assert load({**base, "CONNECTOR_PROCESSING_GUARANTEE": "exactly_once"}).exactly_once
    with pytest.raises(ConfigError, match="PROCESSING_GUARANTEE"):
        load({**base, "CONNECTOR_PROCESSING_GUARANTEE": "at_most_once"})

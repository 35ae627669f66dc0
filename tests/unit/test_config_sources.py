"""Where settings come from: <VAR>_FILE secrets, strict booleans, unknown variables, Vertex."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import config
from connector.config import ALLOWED_ENV, FILE_SUFFIX, OPTIONS, load, load_values
from connector.errors import ConfigError

BASE = {"CONNECTOR_GEMINI_BASE_URL": "http://127.0.0.1:8765"}


def _secret(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- <VAR>_FILE ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "attr"),
    [
        ("GEMINI_API_KEY", "api_key"),
        ("CONNECTOR_SCHEMA_REGISTRY_PASSWORD", "schema_registry_password"),
        ("CONNECTOR_SCHEMA_REGISTRY_BEARER_TOKEN", "schema_registry_bearer_token"),
        ("CONNECTOR_REQUEST_TOPIC", "request_topic"),
    ],
)
def test_any_setting_can_come_from_a_file(tmp_path: Path, var: str, attr: str) -> None:
    """A mounted Kubernetes secret: the value is the file's content, its path remembered."""
    path = _secret(tmp_path, "s3cr3t-value\n")
    s = load({**BASE, f"{var}{FILE_SUFFIX}": path})
    assert getattr(s, attr) == "s3cr3t-value"
    assert s.secret_files == {var: path}


def test_kafka_password_from_a_file_stays_a_string(tmp_path: Path) -> None:
    """An all-digit SASL password read from a file is that string, and describe() masks it."""
    path = _secret(tmp_path, "0123456\r\n")
    s = load({**BASE, "CONNECTOR_KAFKA_SASL_PLAIN_PASSWORD_FILE": path})
    assert s.kafka_extra == {"sasl_plain_password": "0123456"}
    assert s.describe()["kafka_extra"]["sasl_plain_password"] == "***"
    assert "0123456" not in repr(s.describe())


def test_kafka_override_from_a_file(tmp_path: Path) -> None:
    path = _secret(tmp_path, "hunter2")
    s = load({**BASE, "CONNECTOR_KAFKA_PRODUCER_OVERRIDE_SASL_PLAIN_PASSWORD_FILE": path})
    assert s.kafka_extra == {"producer.override.sasl_plain_password": "hunter2"}


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_only_trailing_newlines_are_dropped(text: str) -> None:
    """`echo x > file` adds a newline that is not part of the secret; nothing else changes."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False, newline="") as f:
        f.write(text + "\n")
    try:
        got = config.read_secret_file(f.name, "X_FILE")
    finally:
        Path(f.name).unlink()
    assert got == text.rstrip("\r\n")


def test_both_value_and_file_is_an_error(tmp_path: Path) -> None:
    path = _secret(tmp_path, "a")
    with pytest.raises(ConfigError, match="both GEMINI_API_KEY and GEMINI_API_KEY_FILE"):
        load({"GEMINI_API_KEY": "b", "GEMINI_API_KEY_FILE": path})


def test_unreadable_file_names_the_variable_not_the_content(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="CONNECTOR_SCHEMA_REGISTRY_PASSWORD_FILE") as info:
        load({**BASE, "CONNECTOR_SCHEMA_REGISTRY_PASSWORD_FILE": missing})
    assert "nope" in str(info.value)


def test_other_programs_file_variables_are_left_alone(tmp_path: Path) -> None:
    """SSL_CERT_FILE and the like belong to other libraries: never read, never refused."""
    s = load({**BASE, "SSL_CERT_FILE": str(tmp_path / "absent.pem")})
    assert s.secret_files == {}


def test_no_option_name_ends_like_a_file_variable() -> None:
    """An option named ..._FILE would be read as "the value of ... from a file"."""
    assert not [o.env for o in OPTIONS if o.env.endswith(FILE_SUFFIX)]


# -- strict values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        (" off ", False),
    ],
)
def test_booleans_accept_the_usual_words(raw: str, want: bool) -> None:
    assert load({**BASE, "CONNECTOR_CREATE_TOPICS": raw}).create_topics is want


@pytest.mark.parametrize("raw", ["ture", "", "2", "enabled", "y"])
@pytest.mark.parametrize("var", [o.env for o in OPTIONS if o.type is bool])
def test_other_boolean_words_are_an_error_naming_the_variable(var: str, raw: str) -> None:
    """`ture` used to mean false: now it stops the start."""
    with pytest.raises(ConfigError) as info:
        load({**BASE, var: raw})
    assert var in str(info.value)
    assert repr(raw) in str(info.value)


# -- unknown variables -----------------------------------------------------------------------


def test_an_unknown_variable_names_the_closest_setting() -> None:
    with pytest.raises(ConfigError) as info:
        load({**BASE, "CONNECTOR_REQEST_TOPIC": "x"})
    msg = str(info.value)
    assert "CONNECTOR_REQEST_TOPIC" in msg
    assert "did you mean CONNECTOR_REQUEST_TOPIC?" in msg


def test_every_unknown_variable_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load({**BASE, "CONNECTOR_BATCH_MAX_WAIT": "1", "CONNECTOR_ZZZ": "1"})
    msg = str(info.value)
    assert "CONNECTOR_BATCH_MAX_WAIT (did you mean CONNECTOR_BATCH_MAX_WAIT_S?)" in msg
    assert "CONNECTOR_ZZZ" in msg


def test_an_unknown_file_variable_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_API_KEY_FILE"):
        load({**BASE, "CONNECTOR_API_KEY_FILE": _secret(tmp_path, "k")})


def test_allowed_variables_have_a_reason_and_are_accepted() -> None:
    assert all(reason.strip() for reason in ALLOWED_ENV.values())
    load({**BASE, **dict.fromkeys(ALLOWED_ENV, "1")})


def test_kubernetes_service_links_of_a_service_named_connector_are_not_settings() -> None:
    """A Service called `connector` puts CONNECTOR_PORT & co. into every pod's environment."""
    links = {
        "CONNECTOR_SERVICE_HOST": "10.0.0.7",
        "CONNECTOR_SERVICE_PORT": "8080",
        "CONNECTOR_SERVICE_PORT_HTTP_METRICS": "8080",
        "CONNECTOR_PORT": "tcp://10.0.0.7:8080",
        "CONNECTOR_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "CONNECTOR_PORT_8080_TCP_PROTO": "tcp",
        "CONNECTOR_PORT_8080_TCP_PORT": "8080",
        "CONNECTOR_PORT_8080_TCP_ADDR": "10.0.0.7",
    }
    load({**BASE, **links})
    with pytest.raises(ConfigError, match="CONNECTOR_PORTS"):
        load({**BASE, **links, "CONNECTOR_PORTS": "1"})
    # Without its service's host and port variables a name is just a typo.
    with pytest.raises(ConfigError, match="CONNECTOR_HEALT_PORT"):
        load({**BASE, "CONNECTOR_HEALT_PORT": "8080"})


def test_service_links_of_a_service_named_connector_kafka_are_no_kafka_settings() -> None:
    links = {
        "CONNECTOR_KAFKA_SERVICE_HOST": "10.0.0.8",
        "CONNECTOR_KAFKA_SERVICE_PORT": "9092",
        "CONNECTOR_KAFKA_PORT": "tcp://10.0.0.8:9092",
        "CONNECTOR_KAFKA_PORT_9092_TCP_ADDR": "10.0.0.8",
    }
    assert load({**BASE, **links, "CONNECTOR_KAFKA_ACKS": "1"}).kafka_extra == {"acks": "1"}


def test_other_tools_read_the_same_variables_without_the_run_checks() -> None:
    """`connector status` uses load_values: no endpoint needed, same typing and files."""
    s = load_values({"CONNECTOR_GROUP_ID": "g", "CONNECTOR_KAFKA_CLIENT_ID": "0042"})
    assert s.group_id == "g"
    assert s.kafka_extra == {"client_id": "0042"}


def test_an_override_for_an_unknown_client_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_KAFKA_STREAMS_OVERRIDE_LINGER_MS"):
        load({**BASE, "CONNECTOR_KAFKA_STREAMS_OVERRIDE_LINGER_MS": "5"})


# -- Vertex AI -------------------------------------------------------------------------------


@pytest.mark.parametrize("var", config.VERTEX_SWITCHES)
@pytest.mark.parametrize("raw", ["true", "1", "True", "yes"])
def test_vertex_ai_is_refused(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({**BASE, var: raw})
    assert var in str(info.value)
    assert "Vertex" in str(info.value)


@pytest.mark.parametrize("raw", ["false", "0", ""])
def test_vertex_switched_off_is_fine(raw: str) -> None:
    load({**BASE, "GOOGLE_GENAI_USE_VERTEXAI": raw, "GOOGLE_CLOUD_PROJECT": "p"})


def test_the_gemini_client_never_uses_vertex(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with the SDK's switch in the environment, the adapter's client stays on the
    Gemini API (vertexai=False), so the check above cannot be bypassed by another path."""
    from connector.adapters.gemini import Gemini

    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "some-project")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-central1")
    gemini = Gemini("test-key", "http://127.0.0.1:1")
    try:
        assert gemini._client.vertexai is False
    finally:
        gemini.close()


# -- topic creation settings ---------------------------------------------------------------


def test_topic_creation_is_off_by_default() -> None:
    s = load(BASE)
    assert s.create_topics is False
    assert (s.topic_partitions, s.topic_replication) == (6, 0)


@pytest.mark.parametrize(
    "env", [{"CONNECTOR_TOPIC_PARTITIONS": "0"}, {"CONNECTOR_TOPIC_REPLICATION": "-1"}]
)
def test_topic_creation_numbers_must_make_sense(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_TOPIC_"):
        load({**BASE, **env})


# -- schema registry auth settings ---------------------------------------------------------


def test_registry_takes_basic_auth_or_a_bearer_token_not_both() -> None:
    with pytest.raises(ConfigError, match="not both"):
        load(
            {
                **BASE,
                "CONNECTOR_SCHEMA_REGISTRY_USERNAME": "u",
                "CONNECTOR_SCHEMA_REGISTRY_BEARER_TOKEN": "t",
            }
        )


def test_registry_key_needs_its_certificate() -> None:
    with pytest.raises(ConfigError, match="SSL_CERTFILE"):
        load({**BASE, "CONNECTOR_SCHEMA_REGISTRY_SSL_KEYFILE": "/k.pem"})


def test_describe_masks_the_bearer_token() -> None:
    s = load({**BASE, "CONNECTOR_SCHEMA_REGISTRY_BEARER_TOKEN": "tok-very-secret"})
    assert s.describe()["schema_registry_bearer_token"] == "***"
    assert "tok-very-secret" not in repr(s.describe()) + repr(s)


# -- every variable the project sets or documents is one `connector run` accepts -----------

ROOT = Path(__file__).resolve().parents[2]
_SCANNED = ("README.md", "Makefile", "docs", "deploy", "bench", "tests/integration", "tests/chaos")


def _scanned_files() -> list[Path]:
    out: list[Path] = []
    for name in _SCANNED:
        p = ROOT / name
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        out += [f for f in files if ".cache" not in f.parts and "__pycache__" not in f.parts]
    return out


def test_no_file_sets_or_documents_a_variable_the_sidecar_would_refuse() -> None:
    """The demo, compose stack, manifests, chart, bench, chaos suite and docs name only
    known settings (or allow-listed ones): otherwise they would now stop the sidecar."""
    import re

    known = {o.env for o in OPTIONS} | set(ALLOWED_ENV)
    bad: dict[str, list[str]] = {}
    for f in _scanned_files():
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for var in set(re.findall(r"\bCONNECTOR_[A-Z0-9_]*[A-Z0-9]\b", text)):
            if var.startswith(config.KAFKA_PREFIX) or var.removesuffix(FILE_SUFFIX) in known:
                continue
            bad.setdefault(var, []).append(str(f.relative_to(ROOT)))
    assert not bad, f"unknown settings named in: {bad}"
    assert len(_scanned_files()) > 20  # the scan found the tree


def test_connector_status_reports_a_bad_setting_instead_of_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector import statuscli

    monkeypatch.setenv("CONNECTOR_CREATE_TOPICS", "ture")
    assert statuscli.main([]) == 2
    assert "CONNECTOR_CREATE_TOPICS='ture'" in capsys.readouterr().err


def test_a_sidecar_option_under_the_kafka_prefix_is_not_passed_to_kafka_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings of the sidecar's own (e.g. an OAuth token endpoint) may be named
    CONNECTOR_KAFKA_*: they are options, not kafka-python settings."""
    extra = config.Option("kafka_oauth_x", "CONNECTOR_KAFKA_OAUTH_X", str, "", "test")
    monkeypatch.setattr(config, "OPTIONS", (*config.OPTIONS, extra))
    assert config.load_kafka_extra(
        {"CONNECTOR_KAFKA_OAUTH_X": "u", "CONNECTOR_KAFKA_ACKS": "1"}
    ) == {"acks": "1"}

"""Start-up checks of Kafka compression: every codec readable, `compression_type` a codec."""

from __future__ import annotations

import pytest
from kafka import codec as kafka_codec

from connector.adapters import codecs
from connector.errors import ConfigError


def test_every_codec_a_producer_elsewhere_may_use_is_installed() -> None:
    """The package's dependencies bring snappy, lz4 and zstd: nothing is missing here."""
    assert codecs.missing() == []
    payload = "Сводка заказа, доставка и оплата. ".encode() * 100
    for name in codecs.CODECS:
        encode = getattr(kafka_codec, f"{name}_encode")
        decode = getattr(kafka_codec, f"{name}_decode")
        assert decode(encode(payload)) == payload, name


def test_a_missing_codec_library_is_a_clear_start_up_error() -> None:
    available = {**codecs.CODECS, "snappy": lambda: False}
    with pytest.raises(ConfigError, match=r"\['snappy'\].*python-snappy"):
        codecs.check({}, available)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("zstd", "zstd"), ("LZ4", "lz4"), (" gzip ", "gzip"), ("none", None), ("", None)],
)
def test_compression_type_is_normalised(raw: str, expected: str | None) -> None:
    out = codecs.check({"compression_type": raw, "linger_ms": 5})
    assert out == {"compression_type": expected, "linger_ms": 5}


def test_an_unknown_compression_type_names_the_codecs() -> None:
    with pytest.raises(ConfigError, match=r"'brotli' is not a Kafka codec.*zstd"):
        codecs.check({"compression_type": "brotli"})


def test_settings_without_compression_pass_unchanged() -> None:
    extra = {"security_protocol": "SSL"}
    assert codecs.check(extra) == extra

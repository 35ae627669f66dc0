"""The producer's settings: the user's CONNECTOR_KAFKA_* win, except what durability needs."""

from __future__ import annotations

from connector.adapters.kafka import PRODUCER_CONFIG, producer_config


def test_user_settings_override_the_defaults_once() -> None:
    """A user batch_size (or the ledger's small-limit one) replaces ours: no duplicate kwarg
    (that was a TypeError that stopped the sidecar from starting)."""
    cfg = producer_config("b:9092", {"batch_size": 1500, "linger_ms": 1})
    assert cfg["batch_size"] == 1500
    assert cfg["linger_ms"] == 1
    assert cfg["bootstrap_servers"] == ["b:9092"]


def test_durability_settings_cannot_be_weakened() -> None:
    cfg = producer_config("b:9092", {"acks": 1, "enable_idempotence": False})
    assert cfg["acks"] == "all"
    assert cfg["enable_idempotence"] is True


def test_defaults_are_the_benchmarked_ones() -> None:
    cfg = producer_config("b:9092", {})
    assert {k: cfg[k] for k in PRODUCER_CONFIG} == {
        **PRODUCER_CONFIG,
        "acks": "all",
        "enable_idempotence": True,
    }

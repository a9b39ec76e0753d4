import logging

import pytest

from pineops.logging import RedactSecrets, redact
from trading.config import ConfigError, describe, mask, reference_name, resolve


@pytest.mark.parametrize("value, expected_words", [
    ("${WEBHOOK", "not a valid reference"),
    ("$WEBHOOK", "not a valid reference"),
    ("${}", "not a valid reference"),
    ("${1ABC}", "not starting with a digit"),
    ("${lower}", "A-Z"),
    ("${A}${B}", "not a valid reference"),
    ("${A} tail", "not a valid reference"),
    ("", "is empty"),
    ("https://webhooks.example/abc", "literal URL"),
])
def test_malformed_reference_is_refused_naming_the_field(value, expected_words):
    with pytest.raises(ConfigError) as err:
        reference_name(value, "broker_webhook")
    assert err.value.field == "broker_webhook"
    assert str(err.value).startswith("broker_webhook: ")
    assert expected_words in str(err.value)


def test_unset_variable_names_variable_and_field():
    with pytest.raises(ConfigError) as err:
        resolve("${PINEOPS_NOT_SET_ANYWHERE}", "discord_webhook", environ={})
    assert "PINEOPS_NOT_SET_ANYWHERE is not set" in str(err.value)
    assert err.value.field == "discord_webhook"


def test_empty_variable_is_an_error_not_an_empty_string():
    with pytest.raises(ConfigError, match="X_HOOK is empty"):
        resolve("${X_HOOK}", "broker_webhook", environ={"X_HOOK": "  "})


def test_resolve_returns_the_environment_value():
    assert resolve(" ${X_HOOK} ", "f", environ={"X_HOOK": "http://h/t0ken"}) == "http://h/t0ken"


def test_mask_never_shows_the_token():
    secret = "https://webhooks.traderspost.io/trading/webhook/abc-123/s3cr3t"
    shown = mask(secret)
    assert "abc-123" not in shown and "s3cr3t" not in shown
    assert "webhooks.traderspost.io" in shown
    assert "s3cr3t" not in mask("plain-s3cr3t-value")


def test_describe_masks_a_set_reference_and_explains_an_unset_one():
    env = {"X_HOOK": "http://127.0.0.1:9/hook/very-secret-token"}
    assert "very-secret-token" not in describe("${X_HOOK}", "broker_webhook", env)
    assert "not set" in describe("${Y_HOOK}", "broker_webhook", env)


def test_log_filter_redacts_resolved_secrets_and_secret_env(monkeypatch, caplog):
    secret = "http://127.0.0.1:9/hook/redact-me-please"
    monkeypatch.setenv("SOME_WEBHOOK", secret)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "posting to %s failed", (secret,), None)
    RedactSecrets().filter(record)
    assert secret not in record.getMessage() and "***" in record.getMessage()
    assert redact(f"url={secret}") == "url=***"

"""`${VAR}` references: how configuration names a secret that lives in the environment.

A secret field holds exactly one reference such as `${TRADERSPOST_IBS_A_WEBHOOK}`; the value is
read from the environment when it is used. An unset or empty variable is an error naming the
variable and the field — never a silent empty string. Resolved values are never logged.
"""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from pineops.logging import register_secret

REFERENCE = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)\}$")


class ConfigError(ValueError):
    """A configuration value is wrong; `.field` names where it was found."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def reference_name(value: str, field: str) -> str:
    """The variable name of a `${VAR}` reference, or ConfigError saying what is malformed."""
    text = (value or "").strip()
    match = REFERENCE.match(text)
    if match:
        return match[1]
    if not text:
        raise ConfigError(field, "is empty; give a reference like ${MY_WEBHOOK_URL}")
    if "://" in text:
        raise ConfigError(
            field,
            "holds a literal URL; put the URL in the environment (.env) and write a reference like "
            "${MY_WEBHOOK_URL} here, so the secret is never stored in the database",
        )
    raise ConfigError(
        field,
        f"{text!r} is not a valid reference; write ${{NAME}} with NAME made of A-Z, 0-9 and _, "
        "not starting with a digit",
    )


def resolve(value: str, field: str, environ=None) -> str:
    """The secret a `${VAR}` reference points to; ConfigError if malformed, unset or empty."""
    environ = os.environ if environ is None else environ
    name = reference_name(value, field)
    secret = environ.get(name)
    if secret is None:
        raise ConfigError(field, f"environment variable {name} is not set (referenced as ${{{name}}})")
    if not secret.strip():
        raise ConfigError(field, f"environment variable {name} is empty (referenced as ${{{name}}})")
    register_secret(secret)
    return secret


def mask(secret: str) -> str:
    """A form of a secret safe to show: scheme and host for a URL, else its length; never the token."""
    if not secret:
        return "(empty)"
    parts = urlsplit(secret)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.hostname}/… ({len(secret)} chars)"
    return f"•••• ({len(secret)} chars)"


def describe(value: str, field: str, environ=None) -> str:
    """One line for the admin: the reference and whether/what it resolves to (masked)."""
    try:
        return f"{value} → {mask(resolve(value, field, environ))}"
    except ConfigError as exc:
        return f"{value or '(none)'} — {exc}"

"""Logging filter that removes secret values from every log record before it is written.

Defence in depth: code never logs a secret on purpose, and this makes an accident harmless.
Secrets are the values of environment variables whose names look secret, plus every value
resolved through `${VAR}` interpolation.
"""
import logging
import os
import re

_SECRET_NAME = re.compile(r"(WEBHOOK|SECRET|TOKEN|PASSWORD|API_KEY|_KEY$|_URL$)", re.I)
_NOT_SECRET = {"STATIC_URL"}
_registered: set[str] = set()


def register_secret(value: str) -> None:
    if value and len(value) >= 6:
        _registered.add(value)


def known_secrets() -> list[str]:
    values = set(_registered)
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and name not in _NOT_SECRET and value and len(value) >= 6:
            values.add(value)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if clean != message:
            record.msg, record.args = clean, None
        return True

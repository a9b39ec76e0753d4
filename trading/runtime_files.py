"""Files the admin may name: only inside RUNTIME_DIR, only with the expected suffix, never one of the
appliance's own files (the database, `.env`, the secret key, supervisord's socket and config).

A value written around the admin (the ORM, a fixture) is checked again where the file is used, so a
process never writes a path it was not allowed to.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from django.conf import settings

NAME = re.compile(r"^[A-Za-z0-9_.{}-]+$")
PROTECTED_DIRS = {"redis", "supervisor", "static", "warmup", "bars", "demo"}
PROTECTED_NAMES = {"hub_heartbeat.json"}


class RuntimeFileError(ValueError):
    """A path the admin may not name; the message says why and what is accepted."""


def runtime_file(value: str, *, suffix: str, placeholders: dict[str, str] | None = None) -> Path:
    """The file `value` names inside RUNTIME_DIR (placeholders such as {strategy} filled in)."""
    text = (value or "").strip()
    accepted = f"a file name (or a relative path) inside RUNTIME_DIR ending in {suffix}, e.g. ibs_a_heartbeat{suffix}"
    if not text:
        raise RuntimeFileError(f"is empty; give {accepted}")
    if len(text) > 200 or any(ord(ch) < 32 for ch in text) or "\\" in text:
        raise RuntimeFileError(f"{text[:40]!r} is not a plain path; give {accepted}")
    if text.startswith("{RUNTIME_DIR}/"):
        text = text[len("{RUNTIME_DIR}/"):]
    for name, filled in (placeholders or {}).items():
        text = text.replace("{" + name + "}", filled)
    path = PurePosixPath(text)
    if path.is_absolute() or text.startswith("~"):
        raise RuntimeFileError(f"{value!r} is outside RUNTIME_DIR; give {accepted}")
    parts = path.parts
    if not parts or any(p in ("..", ".") for p in parts) or not all(NAME.match(p) for p in parts):
        raise RuntimeFileError(f"{value!r} may hold only letters, digits, '_', '-', '.' and '/' (no '..'); "
                               f"give {accepted}")
    if parts[0] in PROTECTED_DIRS or parts[-1] in PROTECTED_NAMES or parts[-1].startswith("."):
        raise RuntimeFileError(f"{value!r} is one of the appliance's own files or folders; give {accepted}")
    if not parts[-1].endswith(suffix) or parts[-1] == suffix or "{" in text:
        raise RuntimeFileError(f"{value!r} does not end in {suffix}; give {accepted}")
    root = Path(settings.RUNTIME_DIR).resolve()
    target = (root / path).resolve()  # a symlink planted inside RUNTIME_DIR is followed, then judged
    if root not in target.parents or not target.name.endswith(suffix) or target.name in PROTECTED_NAMES:
        raise RuntimeFileError(f"{value!r} leads outside RUNTIME_DIR or to a protected file; give {accepted}")
    return target

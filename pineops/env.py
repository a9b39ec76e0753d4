"""Loads `.env` into the process environment, once, for every entry point.

Existing environment variables win over the file; a missing file is fine. Never prints values.
"""
import os
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
_loaded = False


def load_env() -> Path | None:
    global _loaded
    path = Path(os.environ.get("PINEOPS_ENV_FILE") or BASE_DIR / ".env")
    if not _loaded:
        _loaded = True
        if path.is_file():
            load_dotenv(path, override=False)
            return path
    return None

#!/usr/bin/env python
"""Django's command-line utility for PineOps (loads `.env` first)."""
import os
import sys

from pineops.env import load_env


def main():
    load_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pineops.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a wrong environment value: one line each, no traceback
        for line in str(exc).splitlines():
            print(f"configuration error: {line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

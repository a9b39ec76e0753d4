#!/usr/bin/env python
"""Django's command-line utility for PineOps (loads `.env` first)."""
import os
import sys

from pineops.env import load_env


def main():
    load_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pineops.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# `make demo`: the whole appliance under supervisord, exactly as the container runs it, with the
# demo settings (deploy/demo.env): generated market data replayed by a local Databento gateway,
# local TradersPost and Discord stand-ins. Ctrl-C stops every process cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
export PINEOPS_ENV_FILE="${PINEOPS_ENV_FILE:-deploy/demo.env}"
export PINEOPS_WEB_BIND="${PINEOPS_WEB_BIND:-127.0.0.1:8000}"
export PINEOPS_ALLOW_ROOT="${PINEOPS_ALLOW_ROOT:-1}"  # a local demo; the image itself never runs as root

export PINEOPS_PYTHON="${PINEOPS_PYTHON:-$(pwd)/.venv/bin/python}"

port_of() {  # the port of a URL variable, from the environment or the env file
  "$PINEOPS_PYTHON" -c 'import os, sys; from urllib.parse import urlsplit; from dotenv import dotenv_values
value = os.environ.get(sys.argv[1]) or dotenv_values(os.environ["PINEOPS_ENV_FILE"]).get(sys.argv[1]) or ""
print(urlsplit(value).port or "")' "$1"
}
cat <<BANNER
PineOps demo
  admin:        http://${PINEOPS_WEB_BIND}/admin/   (login printed below: "login: user / password")
  dashboard:    http://${PINEOPS_WEB_BIND}/admin/dashboard/
  health:       http://${PINEOPS_WEB_BIND}/healthz
  TradersPost stand-in (orders received):  http://127.0.0.1:$(port_of TRADERSPOST_IBS_A_WEBHOOK)/
  Discord stand-in (alerts received):      http://127.0.0.1:$(port_of DISCORD_WEBHOOK_URL)/
  Ctrl-C stops everything.
BANNER
exec bash deploy/entrypoint.sh

#!/usr/bin/env bash
# PineOps entrypoint (the container's, and `make demo`'s): check the environment, wait for the
# database (and an external Redis), migrate under a lock, prepare, then exec supervisord.
set -euo pipefail

export PINEOPS_HOME="${PINEOPS_HOME:-$(cd "$(dirname "$0")/.." && pwd)}"
export PINEOPS_PYTHON="${PINEOPS_PYTHON:-$(command -v python)}"
cd "$PINEOPS_HOME"

if [ "$(id -u)" = 0 ] && [ "${PINEOPS_ALLOW_ROOT:-0}" != 1 ]; then
  echo "entrypoint: refusing to run as root; run as the pineops user (or set PINEOPS_ALLOW_ROOT=1)" >&2
  exit 64
fi

# Settings read .env themselves; supervisord needs RUNTIME_DIR, where Redis is and which programs this
# container's roles start (PINEOPS_ROLES). A wrong value stops here, its line naming the variable.
exports="$("$PINEOPS_PYTHON" manage.py appliance_env)"
eval "$exports"
echo "entrypoint: roles $PINEOPS_ROLES" >&2
mkdir -p "$RUNTIME_DIR/redis" "$RUNTIME_DIR/supervisor"

if [ -z "${PINEOPS_START_REDIS:-}" ]; then
  case "$PINEOPS_REDIS_HOST" in 127.0.0.1|localhost|::1) PINEOPS_START_REDIS=true ;; *) PINEOPS_START_REDIS=false ;; esac
fi
export PINEOPS_START_REDIS

if [ "$PINEOPS_START_HUB" != true ] && [[ ",$PINEOPS_ROLES," == *,hub,* ]]; then
  echo "entrypoint: DATABENTO_API_KEY is not set: the market-data hub is not started (no bars, no trading)" >&2
fi
# One process (manage.py boot): wait for the database (and an external Redis); migrate under
# RUNTIME_DIR/migrate.lock, since several containers may start at once against one database; static
# files, the admin login, the demo when asked, the worker programs.
boot=(--timeout "${PINEOPS_WAIT_SECONDS:-60}")
if [ "$PINEOPS_START_REDIS" != true ]; then boot+=(--redis); fi
if [ "${PINEOPS_LOAD_DEMO:-0}" = 1 ] || [ "${PINEOPS_DEMO:-0}" = 1 ]; then boot+=(--load-demo); fi
if [ "${PINEOPS_DEMO:-0}" = 1 ]; then boot+=(--prepare-demo); fi
"$PINEOPS_PYTHON" manage.py boot "${boot[@]}"

exec "$PINEOPS_PYTHON" -m supervisor.supervisord -c "$PINEOPS_HOME/supervisord.conf"

#!/bin/sh
# pinsignal as a reverse proxy in front of a site written in anything (here: static files).
#
#   ./examples/proxy/run.sh            # site on :8080, pinsignal proxy on :8000, sandbox on :8410
#
# Browsers talk to the proxy (:8000); it forwards every request to the site untouched, except
# the collector routes under /_ps and the epik landing cookie. Stop with Ctrl-C.
set -eu
cd "$(dirname "$0")"
PINSIGNAL="${PINSIGNAL:-../../.venv/bin/pinsignal}"
PYTHON="${PYTHON:-../../.venv/bin/python}"
SITE_PORT="${SITE_PORT:-8080}"
PROXY_PORT="${PROXY_PORT:-8000}"
SANDBOX_PORT="${SANDBOX_PORT:-8410}"

# Local stand-ins for production services: the Pinterest sandbox and the embedded Redis
# (REDIS_URL unset). In production set PINTEREST_AD_ACCOUNT_ID, PINTEREST_ACCESS_TOKEN,
# REDIS_URL and PINSIGNAL_SECRET instead.
export PINTEREST_API_URL="${PINTEREST_API_URL:-http://127.0.0.1:$SANDBOX_PORT}"
export PINTEREST_AD_ACCOUNT_ID="${PINTEREST_AD_ACCOUNT_ID:-549755885175}"
export PINTEREST_ACCESS_TOKEN="${PINTEREST_ACCESS_TOKEN:-sandbox-token}"
export PINSIGNAL_DATA_DIR="${PINSIGNAL_DATA_DIR:-$PWD/.pinsignal}"
export PINSIGNAL_SECRET="${PINSIGNAL_SECRET:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')}"

pids=""
trap 'kill $pids 2>/dev/null; wait' INT TERM EXIT

"$PYTHON" -m http.server "$SITE_PORT" --bind 127.0.0.1 --directory site & pids="$pids $!"
"$PINSIGNAL" sandbox --port "$SANDBOX_PORT" & pids="$pids $!"
"$PINSIGNAL" worker & pids="$pids $!"
"$PINSIGNAL" proxy --upstream "http://127.0.0.1:$SITE_PORT" --port "$PROXY_PORT" & pids="$pids $!"

echo "Open http://127.0.0.1:$PROXY_PORT/?epik=demo-click-id and the sandbox http://127.0.0.1:$SANDBOX_PORT/"
wait

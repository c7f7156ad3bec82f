#!/usr/bin/env bash
# What the test suite needs besides Python packages: Debian's Chromium for the browser
# tests, espeak-ng for speech to transcribe, Tesseract for OCR of scanned PDFs, curl for the API tests, nginx and Caddy for the proxy tests, and running
# Redis and PostgreSQL servers for the scaled-mode tests.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Chromium for the browser tests…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "Installing espeak-ng (speech for the voice input tests)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
fi

if ! command -v curl >/dev/null 2>&1; then
  echo "Installing curl (the API's server-sent events, as a shell script reads them)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

if ! command -v nginx >/dev/null 2>&1; then
  echo "Installing nginx (the proxy tests run the shipped deploy/nginx configuration)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

if ! command -v caddy >/dev/null 2>&1; then
  echo "Installing Caddy (tests/scaled/test_caddy.py runs the shipped deploy/Caddyfile)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null
fi

if ! command -v tesseract >/dev/null 2>&1; then
  echo "Installing Tesseract (OCR of scanned PDFs)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Starting Redis…"
  if ! command -v redis-server >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

if ! command -v pg_dump >/dev/null 2>&1; then
  echo "Installing PostgreSQL's client (pg_dump and pg_restore, for the backup tests)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "Starting PostgreSQL…"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi

for _ in $(seq 1 60); do
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 && exit 0
  sleep 1
done
echo "Redis or PostgreSQL did not come up on 127.0.0.1" >&2
exit 1

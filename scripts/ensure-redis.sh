#!/usr/bin/env bash
# ensure-redis.sh makes sure redis-server and redis-cli are on PATH, which the
# tests (internal/redistest) and scripts/demo.sh need, installing Debian's
# redis-server and redis-tools packages when they are missing.
set -euo pipefail
exec bash "$(dirname "$0")/ensure-packages.sh" ensure-redis "redis-server redis-cli" "redis-server redis-tools" \
	"install Redis >= 7.0 (Debian/Ubuntu: apt-get install -y redis-server redis-tools) so that redis-server and redis-cli are on PATH"

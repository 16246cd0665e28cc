#!/usr/bin/env bash
# ensure-redis.sh makes sure redis-server and redis-cli are on PATH, which the
# tests (internal/redistest) and scripts/demo.sh need. When they are missing it
# installs Debian's redis-server and redis-tools packages with apt-get, using
# sudo only when not root. It exits 1 with a message when that is impossible.
#
# A redis-server system service that the package may start is never used:
# the tests and the demo run their own servers on free loopback ports.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have redis-server && have redis-cli; then
	exit 0
fi

fail() {
	echo "ensure-redis: $*" >&2
	echo "ensure-redis: install Redis >= 7.0 (Debian/Ubuntu: apt-get install -y redis-server redis-tools) so that redis-server and redis-cli are on PATH" >&2
	exit 1
}

if ! have apt-get; then
	fail "redis-server or redis-cli not found in PATH and apt-get is not available"
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if have sudo; then
		sudo=(sudo)
	else
		fail "redis-server or redis-cli not found in PATH; installing needs root, and sudo is not available"
	fi
fi

echo "ensure-redis: redis-server or redis-cli not found; installing redis-server and redis-tools with apt-get" >&2
status=0
"${sudo[@]}" apt-get update || status=$?
if [ "$status" -eq 0 ]; then
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		redis-server redis-tools || status=$?
fi

# The binaries count, not apt's exit status: in a container without an init
# system the package's attempt to start its service may fail after the
# binaries have been unpacked.
hash -r
if have redis-server && have redis-cli; then
	if [ "$status" -ne 0 ]; then
		echo "ensure-redis: apt-get exited with status $status, but redis-server and redis-cli are installed" >&2
	fi
	echo "ensure-redis: $(redis-server --version)" >&2
	exit 0
fi
fail "apt-get could not install redis-server and redis-tools (status $status)"

#!/usr/bin/env bash
# ensure-nutcracker.sh makes sure nutcracker (twemproxy) is on PATH, which the
# tests of rbatch through a proxy need (internal/redistest NewTwemproxy). When
# it is missing it installs Debian's nutcracker package with apt-get, using
# sudo only when not root. It exits 1 with a message when that is impossible.
#
# A nutcracker system service that the package may start is never used: the
# tests run their own nutcracker on free loopback ports.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# Debian installs it in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
if have nutcracker; then
	exit 0
fi

fail() {
	echo "ensure-nutcracker: $*" >&2
	echo "ensure-nutcracker: install twemproxy (Debian/Ubuntu: apt-get install -y nutcracker) so that nutcracker is on PATH" >&2
	exit 1
}

if ! have apt-get; then
	fail "nutcracker not found in PATH and apt-get is not available"
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if have sudo; then
		sudo=(sudo)
	else
		fail "nutcracker not found in PATH; installing needs root, and sudo is not available"
	fi
fi

echo "ensure-nutcracker: nutcracker not found; installing nutcracker with apt-get" >&2
status=0
"${sudo[@]}" apt-get update || status=$?
if [ "$status" -eq 0 ]; then
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		nutcracker || status=$?
fi

# The binary counts, not apt's exit status: in a container without an init
# system the package's attempt to start its service may fail after the
# binary has been unpacked.
hash -r
if have nutcracker; then
	if [ "$status" -ne 0 ]; then
		echo "ensure-nutcracker: apt-get exited with status $status, but nutcracker is installed" >&2
	fi
	echo "ensure-nutcracker: $(nutcracker --version 2>&1 | head -n 1)" >&2
	exit 0
fi
fail "apt-get could not install nutcracker (status $status)"

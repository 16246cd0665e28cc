#!/usr/bin/env bash
# ensure-packages.sh NAME BINARIES PACKAGES HINT makes sure every binary of
# BINARIES (space-separated) is on PATH; when one is missing it installs
# Debian's PACKAGES with apt-get, using sudo only when not root. It exits 1
# with HINT when that is impossible. NAME prefixes its messages.
#
#   scripts/ensure-packages.sh ensure-redis "redis-server redis-cli" \
#       "redis-server redis-tools" "install Redis >= 7.0 (…)"
#
# A system service that a package may start is never used: the tests and
# the demo run their own servers on free loopback ports.
set -euo pipefail

name=$1 bins=$2 pkgs=$3 hint=$4

have() { command -v "$1" >/dev/null 2>&1; }
haveAll() {
	for b in $bins; do
		have "$b" || return 1
	done
}

# Debian installs some daemons (nutcracker) in /usr/sbin, which a non-root
# PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
if haveAll; then
	exit 0
fi

fail() {
	echo "$name: $*" >&2
	echo "$name: $hint" >&2
	exit 1
}

if ! have apt-get; then
	fail "$bins: not all found in PATH, and apt-get is not available"
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if have sudo; then
		sudo=(sudo)
	else
		fail "$bins: not all found in PATH; installing needs root, and sudo is not available"
	fi
fi

echo "$name: $bins: not all found; installing $pkgs with apt-get" >&2
status=0
"${sudo[@]}" apt-get update || status=$?
if [ "$status" -eq 0 ]; then
	# shellcheck disable=SC2086 # pkgs is a list
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		$pkgs || status=$?
fi

# The binaries count, not apt's exit status: in a container without an init
# system a package's attempt to start its service may fail after the
# binaries have been unpacked.
hash -r
if haveAll; then
	if [ "$status" -ne 0 ]; then
		echo "$name: apt-get exited with status $status, but $bins are installed" >&2
	fi
	echo "$name: installed $pkgs" >&2
	exit 0
fi
fail "apt-get could not install $pkgs (status $status)"

#!/usr/bin/env bash
# ensure-nutcracker.sh makes sure nutcracker (twemproxy) is on PATH, which the
# tests of rbatch through a proxy need (internal/redistest NewTwemproxy),
# installing Debian's nutcracker package when it is missing.
set -euo pipefail
exec bash "$(dirname "$0")/ensure-packages.sh" ensure-nutcracker nutcracker nutcracker \
	"install twemproxy (Debian/Ubuntu: apt-get install -y nutcracker) so that nutcracker is on PATH"

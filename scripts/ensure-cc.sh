#!/usr/bin/env bash
# ensure-cc.sh makes sure a C compiler is on PATH: go test -race needs cgo,
# and cgo needs gcc and the C library's headers. Installs Debian's gcc and
# libc6-dev when gcc is missing.
set -euo pipefail
exec bash "$(dirname "$0")/ensure-packages.sh" ensure-cc gcc "gcc libc6-dev" \
	"install a C compiler (Debian/Ubuntu: apt-get install -y gcc libc6-dev): go test -race needs cgo"

# Targets for developers and CI. redis-server is installed on demand by
# scripts/ensure-redis.sh, nutcracker (twemproxy, for the tests through a
# proxy) by scripts/ensure-nutcracker.sh, and gcc (cgo, for go test -race)
# by scripts/ensure-cc.sh; the tests start their own servers
# and proxies on free loopback ports (internal/redistest), so no Redis or
# twemproxy service has to be running.

SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 30s

.PHONY: test vet ensure-redis ensure-nutcracker ensure-cc demo fuzz bench

ensure-redis:
	@bash scripts/ensure-redis.sh

ensure-nutcracker:
	@bash scripts/ensure-nutcracker.sh

ensure-cc:
	@bash scripts/ensure-cc.sh

vet:
	$(GO) vet ./...

test: ensure-redis ensure-nutcracker ensure-cc vet
	$(GO) test -race -count=1 -timeout 15m ./...
	@# Wall-clock bounds are checked only without -race; run those tests once so.
	$(GO) test -count=1 -run 'TestCancel' .
	$(GO) build ./examples/...
	@# The modules of their own: the OpenTelemetry hook and its example.
	cd rbatchotel && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd examples/otel && $(GO) vet ./... && $(GO) build -o /dev/null .
	@if [ -f bench/go.mod ]; then \
		echo "cd bench && $(GO) build ./..."; \
		cd bench && $(GO) build ./...; \
	else \
		echo "bench/go.mod not found: skipping the bench module build"; \
	fi

# Runs every examples/<name> program against throwaway redis-servers.
demo: ensure-redis
	bash scripts/demo.sh

# Runs each fuzz target of each package for FUZZTIME (go test allows one
# -fuzz target per run).
fuzz: ensure-redis
	@found=0; \
	for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list '^Fuzz' "$$pkg") || exit 1; \
		targets=$$(grep '^Fuzz' <<<"$$list" || true); \
		for target in $$targets; do \
			found=1; \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
		done; \
	done; \
	if [ $$found -eq 0 ]; then echo "no fuzz targets found"; fi

bench: ensure-redis
	@if [ -f bench/go.mod ]; then \
		cd bench && $(GO) run .; \
	else \
		echo "bench/go.mod not found: no benchmark to run"; \
	fi
	@# What the OpenTelemetry hook costs a 1M-command batch, interleaved.
	cd rbatchotel && $(GO) test -run '^$$' -bench Overhead -benchtime 20x .

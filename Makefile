# Fulcrum — run `make` for the list of targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH):/usr/sbin:/sbin

GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/fulcrumlb/fulcrum/internal/cli.Version=$(VERSION)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/fulcrum.
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/fulcrum ./cmd/fulcrum

.PHONY: run
run: build ## Start the whole stack locally (installs Debian packages when root) and print how to use it.
	@bash deploy/install-deps.sh postgresql haproxy jq
	$(BIN)/fulcrum dev

.PHONY: generate
generate: ## Regenerate code from openapi/openapi.yaml.
	$(GO) generate ./...

.PHONY: check-generated
check-generated: generate ## Fail when generated files differ from what is committed.
	@git diff --exit-code --stat -- openapi/ || { echo "generated code is stale: run 'make generate' and commit" >&2; exit 1; }

.PHONY: lint
lint: ## go vet and a gofmt check.
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:" >&2; echo "$$out" >&2; exit 1; fi

.PHONY: test
test: lint check-generated ## Run every test against real Postgres (FULCRUM_TEST_DATABASE_URL or a private cluster).
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: bench
bench: ## Run the benchmarks and print figures.
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...

.PHONY: clean
clean: ## Remove build output (keeps .fulcrum/ state).
	rm -rf $(BIN)
